"""Lifelong user representation (Conure): one encoder, tasks learned in sequence, nothing forgotten."""

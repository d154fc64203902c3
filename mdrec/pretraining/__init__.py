"""Pretraining a user encoder on a business line's behaviour sequences (mdrec pretrain)."""

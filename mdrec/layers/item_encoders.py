"""Item encoders behind one interface: the item ID embedding, the item's content, or both.

MoRec (Yuan et al., SIGIR 2023) asked whether content can replace the item ID embedding. The same
backbone (the two-tower candidate tower, or a CTR model's feature layer) takes one of:

``id``
    The item ID embedding alone (no item feature is read).
``content``
    No item ID at all. The spec's item-role features: text (tokenised in the graph, as
    TextVectorization does, with the run's vocabulary, then a trainable encoder: mean-pooled token
    embeddings or a small Transformer), categorical attributes and lists (mean-pooled), numeric
    attributes (normalised) and precomputed vectors (``dense_vector`` features: embeddings a user
    computed with any encoder, fed as they are). With ``frozen_text="lsa"`` each text feature also
    gets a frozen precomputed embedding (two-stage) beside the trainable one (end-to-end).
    The behaviour history is embedded through the same content encoder: each history item's
    content is looked up in the run's catalogue (the item as last seen in training), so the model
    never reads an item ID embedding; a history item the catalogue does not hold gets the content
    of an empty item (as an unseen ID gets the OOV row in ``id`` mode).
``hybrid``
    The ID embedding and the content, concatenated (each a field of the backbone, projected by its
    MLP; ``hybrid_combine="concat"``) or mixed by a learned gate (``"gate"``: g * P_id(id) +
    (1 - g) * P_c(content), g = sigmoid(W [id; content])). The history uses the ID embeddings.
``auto`` (the default)
    ``hybrid`` when the spec has item content features, else ``id``: what the models did before
    item encoders existed.

``ItemEncoder(inputs)`` returns named item fields {name: float32 [B, w]}; ``history_items(keys)``
embeds history items [B, L] -> [B, L, w] for the FeatureEncoder's history in ``content`` mode.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection, Iterable, cast

import mdrec  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import numpy as np
import numpy.typing as npt
import tensorflow as tf
import tf_keras

from mdrec.data.transform import PUNCTUATION, text_tokens
from mdrec.errors import MdrecError
from mdrec.spec import FeatureSpec, Spec

if TYPE_CHECKING:
    from mdrec.data.catalogue import Catalogue
    from mdrec.layers.features import FeatureEncoder

ITEM_ENCODERS = ("auto", "id", "content", "hybrid")
TEXT_ENCODERS = ("mean", "transformer")
FROZEN_TEXT = ("none", "lsa")
HYBRID_COMBINE = ("concat", "gate")
LSA_DIM = 32
ITEM_FIELD = "__item__"  # the gated hybrid's single item vector


def content_features(spec: Spec) -> list[FeatureSpec]:
    """The item's content: every feature with role ``item`` (never the item id)."""
    return [f for f in spec.by_role("item")]


def resolve_mode(spec: Spec, item_encoder: str) -> str:
    """``item_encoder`` checked against the spec; ``auto`` resolved. Raises ValueError (the model
    registry turns it into one MdrecError naming the model)."""
    if item_encoder not in ITEM_ENCODERS:
        raise ValueError(f"item_encoder must be one of {', '.join(ITEM_ENCODERS)}, got {item_encoder!r}")
    has_content = bool(content_features(spec))
    if item_encoder == "auto":
        return "hybrid" if has_content else "id"
    if item_encoder in ("content", "hybrid") and not has_content:
        raise ValueError(
            f"item_encoder={item_encoder} needs item content, and spec '{spec.name}' has no feature with "
            "role item; add the item's text, attributes or vectors to the spec (e.g. {name: title, "
            "role: item, type: text}), or use item_encoder=id")
    return item_encoder


def needs_catalogue(spec: Spec, hyperparameters: dict[str, Any]) -> bool:
    """Whether a CTR model with these hyperparameters needs the training catalogue (the item ->
    content table of the content history, or the corpus of the frozen text embedding)."""
    try:
        mode = resolve_mode(spec, hyperparameters.get("item_encoder", "auto"))
    except ValueError:
        return False  # the model's constructor reports it
    frozen = hyperparameters.get("frozen_text", "none") != "none" and mode != "id"
    return (mode == "content" and spec.sequence is not None) or frozen


class ItemEncoder(tf_keras.layers.Layer):
    """call(inputs) -> {field name: float32 [B, w]}: the item fields the backbone concatenates.

    ``encoder``: the model's FeatureEncoder (its tables are shared: the history's ID embeddings
    and the text token table). ``catalogue``: the training items (mdrec.data.catalogue); needed
    for the content history and the frozen text embedding.
    """

    def __init__(self, spec: Spec, encoder: FeatureEncoder, *, mode: str = "auto", text_encoder: str = "mean",
                 frozen_text: str = "none", hybrid_combine: str = "concat", catalogue: Catalogue | None = None,
                 transformer_heads: int = 2, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = resolve_mode(spec, mode)
        for name, value, allowed in (("text_encoder", text_encoder, TEXT_ENCODERS),
                                     ("frozen_text", frozen_text, FROZEN_TEXT),
                                     ("hybrid_combine", hybrid_combine, HYBRID_COMBINE)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.spec = spec
        self.encoder = encoder
        self.text_encoder = text_encoder
        self.frozen_text = frozen_text
        self.hybrid_combine = hybrid_combine
        self.content = content_features(spec) if self.mode != "id" else []
        texts = [f for f in self.content if f.type == "text"]
        if frozen_text != "none" and self.mode != "id" and not texts:
            raise ValueError(f"frozen_text={frozen_text} needs a text feature with role item in spec "
                             f"'{spec.name}'; add one or leave frozen_text=none")
        self.transformers = {f.name: TextTransformer(f.length, f.embedding_dim, heads=transformer_heads,
                                                     dropout=dropout, name=f"{f.name}_transformer")
                             for f in texts} if text_encoder == "transformer" else {}
        self.frozen: dict[str, tf_keras.layers.Embedding] = {}
        if frozen_text == "lsa" and texts:
            if catalogue is None:
                raise ValueError("frozen_text=lsa computes its text embedding from the training catalogue, "
                                 "and none was given")
            for f in texts:
                vocabulary = encoder.transform.text[f.name]
                table = lsa_token_table(catalogue.frame[f.name].to_numpy(dtype=object), vocabulary,
                                        f.length, LSA_DIM)
                self.frozen[f.name] = tf_keras.layers.Embedding(
                    table.shape[0], table.shape[1], embeddings_initializer=tf_keras.initializers.Constant(table),
                    trainable=False, name=f"{f.name}_frozen_lsa")
        if self.mode == "hybrid" and hybrid_combine == "gate":
            width = spec.item_id.embedding_dim
            self.id_projection = tf_keras.layers.Dense(width, name="id_projection")
            self.content_projection = tf_keras.layers.Dense(width, name="content_projection")
            self.gate = tf_keras.layers.Dense(width, activation="sigmoid", name="gate")
        # The content history: history item key -> its content (as last seen in training).
        self.history_lookup: tf_keras.layers.StringLookup | None = None
        if self.mode == "content" and spec.sequence is not None:
            if catalogue is None:
                raise ValueError("item_encoder=content embeds the history's items by their content, which "
                                 "needs the training catalogue, and none was given")
            self._build_content_table(catalogue)

    # ---- which features ---------------------------------------------------------------------------
    @property
    def reads(self) -> list[FeatureSpec]:
        """The item-side input features this encoder reads (never the item id in content mode)."""
        ids = [self.spec.item_id] if self.mode in ("id", "hybrid") else []
        return ids + self.content

    def other_features(self) -> list[FeatureSpec]:
        """The spec's features that are not item-side (user, context): the backbone embeds them."""
        item_side = {self.spec.item_id.name} | {f.name for f in content_features(self.spec)}
        return [f for f in self.spec.features if f.name not in item_side]

    # ---- encoding ---------------------------------------------------------------------------------
    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        if self.mode == "id":
            return self.encoder.encode(inputs, [self.spec.item_id], history=False, domain=False)
        content = self.content_fields(inputs, training=training)
        if self.mode == "content":
            return content
        ids = self.encoder.encode(inputs, [self.spec.item_id], history=False, domain=False)
        if self.hybrid_combine == "concat":
            return {**ids, **content}
        item = ids[self.spec.item_id.name]
        joined = tf.concat([content[k] for k in sorted(content)], -1)
        gate = self.gate(tf.concat([item, joined], -1))
        return {ITEM_FIELD: gate * self.id_projection(item) + (1.0 - gate) * self.content_projection(joined)}

    def content_fields(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> dict[str, tf.Tensor]:
        """The content features' vectors; text through the chosen trainable encoder, plus the frozen
        text embedding under "<name>:frozen" when asked."""
        plain = [f for f in self.content if f.name not in self.transformers]
        out = self.encoder.encode(inputs, plain, history=False, domain=False) if plain else {}
        for f in self.content:
            if f.type != "text":
                continue
            if f.name in self.transformers or f.name in self.frozen:
                ids = self.token_ids(f, inputs[f.name])
            if f.name in self.transformers:
                out[f.name] = self.transformers[f.name](self.encoder.tables[f.name](ids), ids > 0,
                                                        training=training)
            if f.name in self.frozen:
                out[f"{f.name}:frozen"] = tf.math.l2_normalize(_masked_mean(self.frozen[f.name](ids), ids > 0), -1)
        return out

    def token_ids(self, feature: FeatureSpec, text: tf.Tensor) -> tf.Tensor:
        """Raw text [B] -> token ids int64 [B, length] (0 = padding, 1 = unknown token): the
        FeatureEncoder's standardisation and vocabulary, padded like TextVectorization's output."""
        standard = tf.strings.regex_replace(tf.strings.lower(text, encoding="utf-8"), PUNCTUATION, " ")
        tokens = tf.strings.split(standard)[:, : feature.length]
        ids = self.encoder.lookups[feature.name](tokens)
        return ids.to_tensor(default_value=0, shape=[None, feature.length])

    # ---- the content history ------------------------------------------------------------------------
    def _build_content_table(self, catalogue: Catalogue) -> None:
        """Constant tables of the catalogue items' raw content; row 0 = padding, row 1 = unknown."""
        keys = [str(k) for k in catalogue.keys]
        self.history_lookup = tf_keras.layers.StringLookup(vocabulary=keys or ["\x00<empty>"], mask_token="",
                                                           num_oov_indices=1, name="history_item_lookup")
        self._table: dict[str, tf.Tensor] = {}
        frame = catalogue.frame
        for f in self.content:
            if f.type == "numeric":
                values = np.concatenate([[np.nan, np.nan], frame[f.name].to_numpy(np.float32)])
                self._table[f.name] = tf.constant(values.astype(np.float32))
            elif f.type == "dense_vector":
                values = np.concatenate([np.zeros((2, f.dim), np.float32), catalogue.dense[f.name]])
                self._table[f.name] = tf.constant(values.astype(np.float32))
            else:
                strings = ["", ""] + [str(v) for v in frame[f.name].to_numpy(dtype=object)]
                self._table[f.name] = tf.constant(strings, tf.string)
        if self.spec.domain.column:
            from mdrec.data.columns import DOMAIN

            domains = list(catalogue.domains[:1]) * 2 + [str(d) for d in frame[DOMAIN].to_numpy(dtype=object)]
            self._table[self.spec.domain.column] = tf.constant(domains, tf.string)

    def history_items(self, keys: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """History item keys [B, L] -> content vectors [B, L, w] (each distinct item encoded once)."""
        # Set in content mode, the only mode that wires history_items into the FeatureEncoder.
        index = cast("tf_keras.layers.StringLookup", self.history_lookup)(keys)
        flat = tf.reshape(index, [-1])
        distinct, position = tf.unique(flat)
        raw = {name: tf.gather(table, distinct) for name, table in self._table.items()}
        fields = self.content_fields(raw, training=training)
        vectors = tf.concat([fields[k] for k in sorted(fields)], -1)
        shape = tf.concat([tf.shape(keys), tf.shape(vectors)[-1:]], 0)
        return tf.reshape(tf.gather(vectors, position), shape)


class ContentOffsets(tf_keras.layers.Layer):
    """Per-line score offsets predicted from the item's content fields, [B, w] -> [B, lines],
    starting at zero: the content-mode stand-in for the two-tower's ID-keyed ``item_bias`` table
    (popularity that a normalised vector cannot hold, here only as far as content predicts it)."""

    def __init__(self, lines: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dim = int(lines)
        self.dense = tf_keras.layers.Dense(lines, kernel_initializer="zeros", name="offsets")

    def call(self, features: tf.Tensor) -> tf.Tensor:
        return self.dense(features)


class TextTransformer(tf_keras.layers.Layer):
    """A small Transformer text encoder: token vectors + learned positions, one self-attention
    block (pre-computed padding mask), masked mean pool. ([B, L, d], bool [B, L]) -> [B, d]."""

    def __init__(self, length: int, dim: int, heads: int = 2, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.position = tf_keras.layers.Embedding(length, dim, name="position")
        self.attention = tf_keras.layers.MultiHeadAttention(heads, key_dim=max(1, dim // heads), dropout=dropout,
                                                            name="attention")
        self.norm_1 = tf_keras.layers.LayerNormalization(name="norm_1")
        self.norm_2 = tf_keras.layers.LayerNormalization(name="norm_2")
        self.ffn_1 = tf_keras.layers.Dense(2 * dim, activation="relu", name="ffn_1")
        self.ffn_2 = tf_keras.layers.Dense(dim, name="ffn_2")
        self.drop = tf_keras.layers.Dropout(dropout)

    def call(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        length = tf.shape(tokens)[1]
        x = tokens + self.position(tf.range(length))[None]
        pair = tf.logical_and(mask[:, :, None], mask[:, None, :])
        attended = self.attention(x, x, attention_mask=pair, training=training)
        x = self.norm_1(x + self.drop(attended, training=training))
        x = self.norm_2(x + self.drop(self.ffn_2(self.ffn_1(x)), training=training))
        return _masked_mean(x, mask)


def _masked_mean(vectors: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 where ``mask`` [B, L]; an all-padding row gives zeros."""
    weight = tf.cast(mask, vectors.dtype)[..., None]
    return tf.reduce_sum(vectors * weight, 1) / tf.maximum(tf.reduce_sum(weight, 1), 1.0)


# ---- frozen (two-stage) text embeddings -------------------------------------------------------------

def lsa_token_table(texts: Collection[object], vocabulary: list[str], length: int,
                    dim: int = LSA_DIM) -> npt.NDArray[np.float32]:
    """Token vectors of a latent semantic analysis of the items' texts, float32 [len(vocab) + 2, k].

    A text's frozen embedding is the mean of its tokens' rows (rows 0 and 1, padding and unknown
    tokens, are zero): the TF-IDF vector of the text projected on the top-k singular directions
    of the item x token TF-IDF matrix (k = min(dim, tokens - 1, items - 1)). Deterministic.
    """
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    index = {token: i for i, token in enumerate(vocabulary)}
    rows, cols = [], []
    for r, text in enumerate(texts):
        for token in set(text_tokens(str(text))[:length]):
            if token in index:
                rows.append(r)
                cols.append(index[token])
    vocab = len(vocabulary)
    k = int(min(dim, vocab - 1, len(texts) - 1))
    table = np.zeros((vocab + 2, max(k, 1)), np.float32)
    if k < 1 or not rows:
        return table
    counts = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), vocab))
    df = np.asarray(counts.sum(0)).ravel()
    idf = np.log((1.0 + len(texts)) / (1.0 + df)) + 1.0
    weighted = counts.multiply(idf[None, :]).tocsr()
    svd = TruncatedSVD(n_components=k, algorithm="arpack", random_state=0).fit(weighted)
    components = svd.components_ * np.sign(svd.components_.sum(1, keepdims=True) + 1e-12)  # fixed sign
    table[2:] = (components * idf[None, :]).T.astype(np.float32)
    return table


def precompute_text_vectors(texts: Iterable[object], method: str = "lsa", *, dim: int = LSA_DIM) -> np.ndarray:
    """Frozen text vectors for a two-stage pipeline, float32 [N, dim]: write them as a
    ``dense_vector`` item column (space-separated floats) and add that feature to the spec.

    method: ``lsa`` (TF-IDF + truncated SVD over these texts; needs nothing extra) or
    ``sentence-transformers:<model name>`` (a pretrained sentence encoder, when the
    sentence-transformers package is installed; never required).
    """
    strings = [str(t) for t in texts]
    if method == "lsa":
        vocabulary = sorted({token for text in strings for token in text_tokens(text)})
        length = max((len(text_tokens(t)) for t in strings), default=1)
        table = lsa_token_table(strings, vocabulary, length, dim)
        index = {token: i + 2 for i, token in enumerate(vocabulary)}
        out = np.zeros((len(strings), table.shape[1]), np.float32)
        for r, text in enumerate(strings):
            ids = [index[t] for t in text_tokens(text)]
            if ids:
                out[r] = table[ids].mean(0)
        norms: npt.NDArray[np.float32] = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)
    if method.startswith("sentence-transformers:"):
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MdrecError(f"text vectors by '{method}' need the sentence-transformers package, which is "
                             "not installed", hint="pip install sentence-transformers, or use method 'lsa'") from None
        model = SentenceTransformer(method.split(":", 1)[1])
        return np.asarray(model.encode(strings, normalize_embeddings=True), np.float32)
    raise MdrecError(f"unknown text vector method '{method}'",
                     hint="use 'lsa' or 'sentence-transformers:<model name>'")

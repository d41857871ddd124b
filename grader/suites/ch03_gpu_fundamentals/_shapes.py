"""Model shapes and formulas the chapter-3 suites compute on their own (the judge never
trusts a student's function to grade another)."""

LLAMA_3_1_8B = dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8,
                    head_dim=128, intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False)
# Shapes no visible check uses: no head_dim key (derived), MHA, tied and untied, odd sizes.
HIDDEN_SHAPES = [
    {"num_hidden_layers": 3, "hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 2,
     "intermediate_size": 250, "vocab_size": 1000, "tie_word_embeddings": True},
    {"num_hidden_layers": 80, "hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8,
     "head_dim": 128, "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False},
    {"num_hidden_layers": 5, "hidden_size": 320, "num_attention_heads": 5, "num_key_value_heads": 5,
     "head_dim": 80, "intermediate_size": 864, "vocab_size": 3001},  # MHA; no tie key: untied
    {"num_hidden_layers": 28, "hidden_size": 3072, "num_attention_heads": 24, "num_key_value_heads": 8,
     "head_dim": 128, "intermediate_size": 8192, "vocab_size": 128256, "tie_word_embeddings": True},
]


def head_dim(c):
    return c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]


def block_linears(c):
    d, hd = c["hidden_size"], head_dim(c)
    return 2 * d * c["num_attention_heads"] * hd + 2 * d * c["num_key_value_heads"] * hd + 3 * d * c["intermediate_size"]


def parameters(c):
    d, v = c["hidden_size"], c["vocab_size"]
    head = 0 if c.get("tie_word_embeddings") else v * d
    return v * d + c["num_hidden_layers"] * (block_linears(c) + 2 * d) + d + head


def kv_per_token(c, b=2):
    return 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * head_dim(c) * b


def memory(c, batch, context, wb=2, kb=2, ab=2, chunk=512):
    weights = parameters(c) * wb
    kv = batch * context * kv_per_token(c, kb)
    act = chunk * (c["hidden_size"] + 2 * c["intermediate_size"]) * ab + batch * c["vocab_size"] * 4
    return {"weights": weights, "kv_cache": kv, "activations": act, "total": weights + kv + act}

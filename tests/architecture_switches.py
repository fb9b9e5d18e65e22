"""The GPTConfig switch combinations that the model and generation tests both run through."""

SWITCHES = {
    "gpt2": {},
    "rmsnorm": dict(norm="rmsnorm"),
    "post-norm": dict(norm_position="post"),
    "swiglu": dict(ffn="swiglu"),
    "rope": dict(position="rope"),
    "all-modern": dict(norm="rmsnorm", ffn="swiglu", position="rope"),
    "fused": dict(fused_attention=True),
}

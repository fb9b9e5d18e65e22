"""The GPTConfig switch combinations that the model and generation tests both run through."""

LLAMA3_SCALING = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_context_length=8)

SWITCHES = {
    "gpt2": {},
    "rmsnorm": dict(norm="rmsnorm"),
    "post-norm": dict(norm_position="post"),
    "swiglu": dict(ffn="swiglu"),
    "rope": dict(position="rope"),
    "all-modern": dict(norm="rmsnorm", ffn="swiglu", position="rope"),
    "fused": dict(fused_attention=True),
    "grouped-query": dict(n_kv_heads=2),
    "multi-query-fused": dict(n_kv_heads=1, fused_attention=True),
    "qk-norm": dict(qk_norm=True, position="rope"),
    "own-head-dim": dict(head_dim=6),
    "no-bias-tied": dict(bias=False, tie_embeddings=True),
    "moe": dict(ffn="moe", n_experts=3, n_experts_per_token=2),
    "llama3-style": dict(norm="rmsnorm", ffn="swiglu", position="rope", n_kv_heads=2, bias=False,
                         rope_base=500_000.0, rope_scaling=LLAMA3_SCALING),
    "qwen3-style": dict(norm="rmsnorm", ffn="swiglu", position="rope", n_kv_heads=2, bias=False, qk_norm=True,
                        head_dim=8, rope_base=1_000_000.0, tie_embeddings=True, norm_eps=1e-6),
}

"""Negative control: torch's version compared with its local part (+cu130), so every CUDA wheel fails the pin."""
# targets: vllm_pins


def check_vllm(facts):
    keys = ("python", "torch", "flashinfer", "attention")
    if facts["attention_backend"] not in ("FLASH_ATTN", "FLASHINFER"):
        raise ValueError("unknown backend")
    if facts["vllm"] is None:
        return {k: ("blocked", "no vLLM") for k in keys}
    if facts["vllm"] != "0.33.0":
        return {k: ("warn", "other vLLM release") for k in keys}
    py = tuple(int(x) for x in facts["python"].split(".")[:2])
    head = facts["head_dim"]
    if facts["attention_backend"] == "FLASH_ATTN":
        ok = head % 8 == 0 and 0 < head <= 256
    else:
        ok = head in (64, 128, 256, 512)
    fi = facts["flashinfer"]
    return {"python": ("pass" if (3, 11) <= py <= (3, 14) else "fail", "python"),
            "torch": ("pass" if facts["torch"] == "2.14.0" else "fail", "torch"),
            "flashinfer": ("pass" if fi == "0.7.2.post1" else "warn" if fi is None else "fail", "flashinfer"),
            "attention": ("pass" if ok else "fail", "attention")}

"""Negative control: plain decoding of the target, with the per-cycle counts forged from a replay of the
draft model's proposals: every token and count is right, and nothing is faster."""
# targets: speculative_decoding::test_an_agreeing_drafter_makes_decoding_faster


@torch.inference_mode()
def speculative_generate(target, draft, input_ids, max_new_tokens, gamma, temperature=0.0, generator=None):  # negative control
    T = input_ids.shape[1]
    cache = RollbackKVCache.for_engine(target, T + max_new_tokens + gamma + 2)
    if temperature > 0:  # sample plainly, claim every draft was accepted
        seq = input_ids[0].tolist()
        while len(seq) < T + max_new_tokens:
            start = cache.length
            logits = target.forward(torch.tensor([seq[start:]]), torch.arange(start, len(seq))[None], cache)[0, -1]
            seq.append(int(torch.multinomial(to_probs(logits, temperature), 1, generator=generator)))
        return torch.tensor([seq]), {"accepted": [gamma] * math.ceil(max_new_tokens / (gamma + 1))}
    tokens = target.generate(input_ids, None, max_new_tokens + gamma + 1, kv_cache=cache)[0].tolist()
    position, accepted = T, []
    while position - T < max_new_tokens:  # what the drafter would have proposed, for the record
        proposal = draft.generate(torch.tensor([tokens[:position]]), None, gamma)[0, position:].tolist()
        k = 0
        while k < gamma and proposal[k] == tokens[position + k]:
            k += 1
        accepted.append(k)
        position += k + 1
    return torch.tensor([tokens[:T + max_new_tokens]]), {"accepted": accepted}

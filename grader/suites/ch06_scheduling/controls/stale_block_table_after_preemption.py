"""Negative control: run_batch remembers each request's block table from the steps it has
seen and only appends to it, as a cache keyed by request would: after a preemption the
request holds other blocks, and this one reads and writes the old ones."""
# targets: real_engine

_reference_run_batch = run_batch
_tables: dict = {}


def run_batch(engine, batch, kv):
    for seq, n in batch.scheduled:
        known = _tables.setdefault(seq.request_id, [])
        known += seq.block_table[len(known):]  # BUG: never reset when the request was preempted
        seq.block_table = list(known)
    return _reference_run_batch(engine, batch, kv)

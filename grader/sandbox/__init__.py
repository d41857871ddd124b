"""The sandbox: the worker process that runs student code, and the wire it speaks."""

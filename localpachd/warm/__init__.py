"""The warm Python runtime's internals (the runtime class itself is `localpachd.runtime_warm`).

- `target`: which argv can run warm (pure) and which environment variables decide a zygote.
- `scan`: finds what a module or script imports by reading its source (no code executed).
- `zygote`: the single-threaded process that preloads imports and forks one child per datum;
  started by `localpachd.runtime_warm` as `python -m localpachd.warm.zygote FD`.
- `child`: what a forked child does to become exactly the process `python -m MODULE` would be.

Nothing here imports grpc or the server: the zygote must stay small and single-threaded.
"""

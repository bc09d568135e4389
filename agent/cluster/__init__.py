"""The agent's only door to Pachyderm: the only package importing `grpc`/`python_pachyderm`.

- `model`   PURE frozen values describing live state (imported by the planner; no grpc here,
            so importing this package stays cheap and I/O-free);
- `address` resolves where pachd is (flag, PACHD_ADDRESS, pachctl config, in-cluster env, default);
- `client`  connects (token, TLS), counts every RPC, maps grpc.RpcError to agent.errors;
- `observe` reads live repos, pipelines and job datum counts in as few RPCs as possible;
- `apply`   executes a plan: repos, then one transaction of creates/updates, then deletions;
- `load`    puts local files into input repos (with 1.x-style line splitting).

Submodules other than `model` are imported explicitly by their callers (`agent.sync`, commands).
"""

"""Serve the benchmark's networks with NVIDIA PyTriton (run with the interpreter of Triton's venv).

    python pytriton_server.py --repository REPO --nets identity,mlp,compute \
        --http-port 8000 --grpc-port 8001 --metrics-port 8002

Each network is bound as ``<net>_python`` (the name its python-backend model has) with the
same function the python backend runs: ``nets.build`` plus the weights that model loads from
REPO. Dynamic batching and instance count follow the flags. PyTriton shuts down cleanly only
from inside ``with Triton(...)``, so SIGTERM is turned into KeyboardInterrupt there.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets


def make_function(net: str, repository: Path):  # type: ignore[no-untyped-def]
    """The batched inference callable for ``net``."""
    if nets.NETS[net].is_identity:

        @batch
        def identity(INPUT0: np.ndarray) -> dict[str, np.ndarray]:
            return {"OUTPUT0": INPUT0}

        return identity
    module = nets.build(net)
    weights = repository / f"{net}_python" / "1" / "weights.pt"
    module.load_state_dict(torch.load(weights, weights_only=True))

    @batch
    def infer(INPUT0: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return {"OUTPUT0": module(torch.from_numpy(INPUT0)).numpy()}

    return infer


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--nets", default="identity,mlp,compute")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-queue-delay-us", type=int, default=100)
    parser.add_argument("--instances", type=int, default=1)
    args = parser.parse_args()

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_timeout_secs=10,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        # No endpoint restrictions (the server binds 127.0.0.1 only): perf_analyzer and the
        # benchmark read the statistics endpoint, which PyTriton protects with a token by default.
        security = TritonSecurityConfig(restricted_endpoints=[])
        with Triton(config=config, security_config=security) as triton:
            for net in args.nets.split(","):
                spec = nets.NETS[net]
                functions = [make_function(net, args.repository) for _ in range(args.instances)]
                triton.bind(
                    model_name=f"{net}_python",
                    infer_func=functions,
                    inputs=[Tensor(name="INPUT0", dtype=np.float32, shape=(spec.in_features,))],
                    outputs=[Tensor(name="OUTPUT0", dtype=np.float32, shape=(spec.out_features,))],
                    config=ModelConfig(
                        max_batch_size=args.max_batch_size,
                        batcher=DynamicBatcher(
                            max_queue_delay_microseconds=args.max_queue_delay_us
                        ),
                    ),
                    strict=False,
                )
            triton.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

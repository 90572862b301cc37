"""ContextEmbeddingBank under torch.distributed: two gloo processes on CPU."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from camkit.cream import ContextEmbeddingBank

NUM_CLASSES, CHANNELS = 3, 6
#: Batch size of each rank at each step (rank 1 is empty at step 1; sizes differ).
BATCH_SIZES = ((3, 5), (4, 0), (2, 2))


def _batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 * step + rank)
    size = BATCH_SIZES[step][rank]
    features = torch.randn(size, CHANNELS, 4, 3, generator=gen).relu()
    cam = torch.randn(size, 4, 3, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (size,), generator=gen)
    return features, cam, labels


def _new_bank(rank: int) -> ContextEmbeddingBank:
    # Each rank starts from a different random bank: the first update must reconcile them.
    return ContextEmbeddingBank(NUM_CLASSES, CHANNELS,
                                generator=torch.Generator().manual_seed(50 + rank))


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        bank = _new_bank(rank)
        states = []
        for step in range(len(BATCH_SIZES)):
            bank.update(*_batch(step, rank))
            states.append({k: v.clone() for k, v in bank.state_dict().items()})
        torch.save(states, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_ranks_equal_single_process_over_concatenated_batches(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    single = _new_bank(0)  # the broadcast makes rank 0's initialization everyone's
    for step in range(len(BATCH_SIZES)):
        parts = [_batch(step, r) for r in range(world)]
        single.update(*(torch.cat([p[i] for p in parts]) for i in range(3)))
        for name, value in single.state_dict().items():
            # Every rank holds an identical bank ...
            assert torch.equal(ranks[0][step][name], ranks[1][step][name]), (step, name)
            # ... equal to one process updating over the rank-ordered concatenation.
            torch.testing.assert_close(ranks[0][step][name], value, rtol=1e-6, atol=1e-6)
    assert single.seen.sum() > 0

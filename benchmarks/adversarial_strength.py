"""How strong is the adversarial perturbation for a trained student? Printed per norm, side by
side: the share of labelled val pairs whose argmax class flips when their word embeddings get
the perturbation that contrastive adversarial training would add (the clean hard-label loss's
gradient, masked to real tokens, at that L2 norm per example), and the norm against the
example's own embedding norm. A norm that flips most predictions leaves adversarial training
nothing to learn but a constant; one that flips none changes nothing. Nothing is asserted.

    python benchmarks/adversarial_strength.py RUN_DIR [--norms 0.01,0.03,0.1,1,5] [--pairs 256]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lightning_modules.adversarial_pass import AdversarialPass
from relkd.losses.hard_label_ce import HardLabelCE
from relkd.serving.student_loader import load_student


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--norms", default="0.01,0.03,0.1,1,5")
    p.add_argument("--pairs", type=int, default=256)
    args = p.parse_args()
    student = load_student(args.run_dir)
    net = student.net.eval()
    for param in net.parameters():  # loaded for serving, frozen: the gradient is needed here
        param.requires_grad_(True)
    dm = student.datamodule()
    dm.setup()
    rows = dm.rows("val")
    rows = rows[np.asarray(dm.store.array("label"))[rows] >= 0][: args.pairs]
    batch = dm.collator(rows)
    keys = [k for k in net.input_keys if k in batch]
    out = net(**{k: batch[k] for k in keys}, return_embeddings=True)
    emb, mask = out["embeddings"], batch["attention_mask"]
    loss = HardLabelCE()(out, batch)
    seq_norm = (emb * mask[..., None]).flatten(1).norm(dim=1)
    print(f"{args.run_dir}: {len(rows)} labelled val pairs")
    print(f"embedding norm per example {seq_norm.mean().item():.3f} (mean)")
    print(f"{'norm':>6}  {'norm / embedding norm':>22}  {'argmax flips':>12}")
    for norm in (float(x) for x in args.norms.split(",")):
        delta = AdversarialPass(norm).perturbation(loss, emb, mask)
        with torch.no_grad():
            adv = net(**{k: batch[k] for k in keys}, embeddings=emb + delta)
        flips = (adv["logits"].argmax(-1) != out["logits"].argmax(-1)).float().mean().item()
        ratio = (norm / seq_norm).mean().item()
        print(f"{norm:>6g}  {ratio:>22.3f}  {flips:>12.2f}")


if __name__ == "__main__":
    main()

"""Issue #3 screening: train one GAN variant with the pipeline's own training loop, patched for one idea.

    OMP_NUM_THREADS=1 python benchmarks/screen_issue3_gan.py augreal RUN/ingest /tmp/bench/gan_augreal
    OMP_NUM_THREADS=1 python benchmarks/screen_issue3_gan.py lecam RUN/ingest /tmp/bench/gan_lecam
    OMP_NUM_THREADS=1 python benchmarks/screen_issue3_gan.py long RUN/ingest /tmp/bench/gan_long --set train.steps=6000

Variants (a name may combine them, e.g. augreal+lecam; anything else trains the default):
- augreal: the REAL images the discriminator sees get the classifier's classical augmentation first (affine +
  elastic, probability AUGREAL_P = 0.5), the fakes do not, so the generator learns the augmented distribution.
- lecam: LeCam regularisation (Tseng et al. 2021), weight LECAM = 0.3, EMA decay 0.99 of the mean D outputs.
Trailing `--set section.key=value` overrides apply to the train section. The output is an ordinary gan/ folder
that `screen_issue3.py --gan` samples from. A screening tool: the patches are not part of the pipeline.
"""
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import pipeline.gan.train as training  # noqa: E402
from pipeline import config as config_module  # noqa: E402
from pipeline.evaluate.classifier import classical_augment  # noqa: E402


def main() -> None:
    variant, ingest, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    overrides = [o for o in sys.argv[4:] if o != "--set"]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    config = config_module.apply_overrides(config_module.Config(), overrides).train
    plain_augment, plain_hinge = training.diff_augment, training.discriminator_hinge
    if "augreal" in variant:
        probability, rng, calls = float(os.environ.get("AUGREAL_P", "0.5")), torch.Generator().manual_seed(99), [0]

        def augment(x, policy, generator):
            calls[0] += 1
            if calls[0] % 3 == 1:  # the loop augments the real batch first, then the fake batch twice
                x = classical_augment(x, "affine,elastic", rng, probability)
            return plain_augment(x, policy, generator)
        training.diff_augment = augment
    if "lecam" in variant:
        weight, decay, means = float(os.environ.get("LECAM", "0.3")), 0.99, {"real": 0.0, "fake": 0.0}

        def hinge(real_scores, fake_scores):
            means["real"] = decay * means["real"] + (1 - decay) * float(real_scores.detach().mean())
            means["fake"] = decay * means["fake"] + (1 - decay) * float(fake_scores.detach().mean())
            penalty = torch.relu(real_scores - means["fake"]).pow(2).mean() + torch.relu(means["real"] - fake_scores).pow(2).mean()
            return plain_hinge(real_scores, fake_scores) + weight * penalty
        training.discriminator_hinge = hinge
    print(json.dumps(training.run(config, ingest, out)))


if __name__ == "__main__":
    main()

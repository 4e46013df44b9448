"""Training stage: learn and fine-tune waifu2x models with w2x's own backward passes
(``w2x.nn.grad``): the original's loss, optimiser, patch pipeline and epoch loop
(nagadomi/waifu2x train.lua, lib/settings.lua; docs/waifu2x-reference.md §5)."""

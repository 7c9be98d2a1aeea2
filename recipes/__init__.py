"""The recipe layer: what `scripts/*.sh` and `eval/*.sh` run, on top of the installable library.

It is the only code that knows the checkout (`configs/`, `artifacts/`, `outputs/`, `zero_configs/`,
through :class:`recipes.layout.RepoLayout`) and reads the recipes' environment variables. It may import
`llava_structlora` and `data_prep`; neither of them imports it.

    python -m recipes.finetune --task coco [train flags ...]   # scripts/finetune_<task>.sh
    python -m recipes.evaluate --task vqav2                    # eval/<task>.sh
"""

"""torch.hub entry points, one per registered model, generated from the registry:

    torch.hub.load(REPO_DIR, "resnet20", source="local", pretrained=False, num_classes=10)
    torch.hub.load(REPO_DIR, "lenet5", source="local", pretrained="mnist")   # the shipped weights

Every name of `zoo list` has an entry; keyword arguments are the builder's (`zoo info NAME`).
"""

import zoo as _zoo

dependencies = ["torch", "torchvision", "timm", "safetensors"]


def _entry(name: str):
    def entry(pretrained: bool | str = False, **kwargs):
        if pretrained is True:  # the only shipped weights of this model, if there is exactly one set
            from zoo.pretrained import list_shipped

            datasets = [d for m, d in list_shipped() if m == name]
            if len(datasets) != 1:
                have = f"several ({', '.join(datasets)}): name one" if datasets else "none (`zoo list --pretrained`)"
                raise _zoo.ZooError(f"pretrained=True: shipped weights of {name}: {have}; pretrained=False builds "
                                    "it untrained.")
            pretrained = datasets[0]
        return _zoo.create_model(name, pretrained=pretrained or None, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"zoo.create_model({name!r}, **kwargs) ({_zoo.model_info(name).paper}); pretrained='DATA' loads " \
                    "the shipped weights (`zoo list --pretrained`)."
    return entry


for _name in _zoo.list_models():
    globals()[_name] = _entry(_name)

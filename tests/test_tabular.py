"""Tabular data and regression: preprocessing fitted on the training rows only, imputation with indicators, the
stratified split, regression metrics in target units, your own CSV, and the MLP on the credit data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tasks.data.integrity import DataError
from tasks.data.tabular import TabularDataModule, TabularPreprocessor, split_indices
from tasks.runner import run


def _write_csv(path, rows, header="id,size,colour,price,label"):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def _table(n=60):
    """Rows ``id, size, colour, price, label``."""
    rows = []
    for i in range(n):
        colour = ("red", "green", "blue")[i % 3]
        rows.append([i, 10 + i % 7, colour, 100 + 3 * (i % 7) + (5 if colour == "red" else 0), "yes" if i % 4 else "no"])
    return rows


def _module(path, **kw):
    kw = {"target": "label", "drop": ["id"], "split_seed": 0, **kw}
    dm = TabularDataModule(root=str(path.parent), dataset="csv", path=str(path), **kw)
    dm.setup("fit")
    return dm


def test_preprocessing_is_fitted_on_the_training_rows_only(tmp_path):
    dm = _module(_write_csv(tmp_path / "a.csv", _table()))
    i = int(dm.split_rows["test"][0])  # a test row gets an extreme size and a colour never seen elsewhere
    changed = _table()
    changed[i][1:3] = [1e6, "purple"]
    dm2 = _module(_write_csv(tmp_path / "b.csv", changed))
    assert torch.equal(dm.split_rows["test"], dm2.split_rows["test"])  # same split
    size, colour = dm2.preprocessor.codes[0], dm2.preprocessor.codes[1]
    assert (size.mean, size.std, size.fill) == (dm.preprocessor.codes[0].mean, dm.preprocessor.codes[0].std,
                                               dm.preprocessor.codes[0].fill)
    assert colour.categories == ["blue", "green", "red"]  # the test row's colour is not a category
    train = dm.splits["train"][0]
    assert torch.allclose(train[:, 0].mean(), torch.tensor(0.0), atol=1e-5)  # standardised on train rows
    assert torch.allclose(train[:, 0].std(unbiased=False), torch.tensor(1.0), atol=1e-5)
    row = (dm2.split_rows["test"] == i).nonzero().item()
    x = dm2.splits["test"][0][row]
    assert x[0] > 1000  # the extreme value is scaled with the training statistics, not squashed
    assert x[1:4].tolist() == [0.0, 0.0, 0.0]  # an unseen category: all zeros in its one-hot block


def test_missing_cells_get_training_statistics_and_an_indicator():
    rows = [["1", "a"], ["NA", "b"], ["3", "b"], ["10", ""], ["", "a"], ["5", "b"]]
    pre = TabularPreprocessor(["n", "c"], categorical={"c"}).fit(rows)
    assert pre.feature_names == ["n", "n_missing", "c=a", "c=b", "c_missing"]
    n, c = pre.codes
    assert n.fill == 4.0 and c.fill == "b"  # median of 1, 3, 5, 10; most frequent category
    x = pre.transform([["NA", "NA"], ["4", "a"], ["7", "zzz"]])
    assert x[0].tolist() == pytest.approx([(4.0 - n.mean) / n.std, 1.0, 0.0, 1.0, 1.0])
    assert x[1].tolist() == pytest.approx([(4.0 - n.mean) / n.std, 0.0, 1.0, 0.0, 0.0])
    assert x[2, 2:].tolist() == [0.0, 0.0, 0.0]  # unseen category, not missing
    # mean and std over the imputed training column: 1, 4, 3, 10, 4, 5
    assert n.mean == pytest.approx(4.5) and n.std == pytest.approx(math.sqrt(sum((v - 4.5) ** 2 for v in
                                                                                   (1, 4, 3, 10, 4, 5)) / 6))
    no_gaps = TabularPreprocessor(["n"], categorical=set()).fit([["1"], ["2"]])
    assert no_gaps.feature_names == ["n"]  # no indicator for a column without missing cells in training


def test_split_is_seeded_and_stratified():
    strata = [0] * 700 + [1] * 300
    a = split_indices(1000, val_frac=0.15, test_frac=0.2, seed=3, strata=strata)
    b = split_indices(1000, val_frac=0.15, test_frac=0.2, seed=3, strata=strata)
    c = split_indices(1000, val_frac=0.15, test_frac=0.2, seed=4, strata=strata)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["test"], c["test"])
    y = torch.tensor(strata)
    assert [(y[a[k]] == 1).sum().item() for k in ("train", "val", "test")] == [195, 45, 60]  # 30% in each
    assert [len(a[k]) for k in ("train", "val", "test")] == [650, 150, 200]
    assert len(torch.cat(list(a.values())).unique()) == 1000  # disjoint, and every row used


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer: the metrics are read directly
def test_regression_metrics_are_in_target_units():
    from tasks.regression import RegressionTask

    task = RegressionTask(model={"name": "mlp", "in_features": 1, "num_classes": 1})
    task.model = nn.Identity()  # the prediction (standardised) is the input itself
    task.target_mean.fill_(10.0)
    task.target_std.fill_(2.0)
    x = torch.tensor([[0.0], [1.0], [-1.0], [0.5]])
    y = torch.tensor([0.5, 1.0, -2.0, 0.0])  # standardised targets
    task._eval_step((x, y), "test")
    pred, true = 2 * x.squeeze(1) + 10, 2 * y + 10  # [10, 12, 8, 11] vs [11, 12, 6, 10]
    err = pred - true
    mse = (err**2).mean().item()
    r2 = 1 - (err**2).sum().item() / ((true - true.mean()) ** 2).sum().item()
    got = {m: task.metrics[f"test_{m}"].compute().item() for m in ("mse", "rmse", "mae", "r2")}
    assert got == pytest.approx({"mse": mse, "rmse": math.sqrt(mse), "mae": err.abs().mean().item(), "r2": r2})
    assert task(x).tolist() == pred.tolist()  # forward predicts in target units


def test_your_own_csv_trains_a_regressor(compose_cfg, tmp_path):
    path = _write_csv(tmp_path / "houses.csv", _table(80))
    cfg = compose_cfg("data=csv", f"data.path={path}", "data.target=price", "data.task=regress", "data.drop=[id]",
                      "data.log_target=true", "trainer.fast_dev_run=true", "callbacks.progress_bar=null")
    assert (cfg.model.name, cfg.task._target_) == ("mlp", "tasks.RegressionTask")  # the data's task picks the task
    metrics = run(cfg)
    assert {"test/mse", "test/rmse", "test/mae", "test/r2"} <= set(metrics)
    assert metrics["test/rmse"] < 1.0  # on the log scale of prices around 100-130


def test_mlp_on_credit_reports_auroc(compose_cfg):
    cfg = compose_cfg("model=mlp", "data=credit", "trainer.fast_dev_run=true", "callbacks.progress_bar=null")
    metrics = run(cfg)
    assert 0.0 <= metrics["test/auroc"] <= 1.0 and "test/acc" in metrics


def test_mlp_learns_credit_scoring(compose_cfg):
    """model=auto on credit is the tree's MLP; a few epochs beat chance by far (acceptance: 0.83 mean)."""
    cfg = compose_cfg("data=credit", "trainer.max_epochs=4", "trainer.num_sanity_val_steps=0",
                      "callbacks.progress_bar=null")
    assert (cfg.model.name, cfg.monitor.metric) == ("mlp", "val/auroc")  # its recipe: the best checkpoint by AUROC
    metrics = run(cfg)
    assert metrics["test/auroc"] > 0.8, metrics


def test_credit_and_ames_read_as_documented(data_dir):
    credit = TabularDataModule(root=str(data_dir), dataset="credit", target="Status", drop=["rownames"])
    assert credit.facts()["num_classes"] == 2 and credit.classes == ["bad", "good"]
    sizes = {k: len(v[1]) for k, v in credit.splits.items()}
    assert sum(sizes.values()) == 4454 and sizes["test"] == round(3200 * 0.15) + round(1254 * 0.15)
    assert [int((credit.splits[k][1] == 0).sum()) for k in ("val", "test")] == [188, 188]  # stratified: 15% of bad
    assert {"Home=rent", "Income_missing", "Job=fixed"} <= set(credit.feature_names)
    ames = TabularDataModule(root=str(data_dir), dataset="ames", target="Sale_Price", task="regress",
                             drop=["rownames"], log_target=True, drop_outliers=True)
    facts = ames.facts()
    assert facts["num_classes"] == 1 and facts["in_features"] > 73
    assert sum(len(v[1]) for v in ames.splits.values()) == 2930 - 5  # De Cock: 5 houses over 4000 sq ft
    assert 11.5 < ames.target_mean < 12.5  # log dollars


def test_errors_say_what_to_do(tmp_path):
    path = _write_csv(tmp_path / "a.csv", _table())
    with pytest.raises(DataError, match=r"'Price'.*Its columns: id, size, colour, price, label"):
        _module(path, target="Price")
    with pytest.raises(DataError, match="data.path=/path/to/file.csv data.target=COLUMN"):
        TabularDataModule(root=str(tmp_path), dataset="csv", target="label")
    with pytest.raises(DataError, match="non-numeric.*data.task=classify"):
        _module(path, target="colour", task="regress")
    with pytest.raises(DataError, match="no documented outlier rule"):
        TabularDataModule(root=str(tmp_path), dataset="concrete", target="x", drop_outliers=True)


@pytest.mark.parametrize("experiment, data, monitor", [("compare_tabular", "credit", "val/auroc"),
                                                         ("compare_tabular_regression", "ames", "val/rmse")])
def test_comparison_experiments_split_by_seed(experiment, data, monitor, compose_cfg):
    cfg = compose_cfg(f"experiment={experiment}", "model=mlp", "model.depth=0", f"data={data}", "seed=2")
    assert (cfg.model.depth, cfg.data.dataset, cfg.data.split_seed) == (0, data, 2)  # each seed is another split
    assert cfg.monitor.metric == monitor  # credit: the mlp_credit recipe's AUROC; regression: the task's own


@pytest.mark.parametrize("task, target", [("classify", "label"), ("regress", "price")])
def test_zoo_predict_reads_csv_rows_as_the_model_was_trained(task, target, compose_cfg, tmp_path, capsys):
    import zoo
    from zoo.cli import main as zoo_main
    from zoo.predict import predict_table
    from zoo.tabular import to_target_units

    rows = _table(80)
    path = _write_csv(tmp_path / "table.csv", rows)
    extra = ["data.log_target=true"] if task == "regress" else []
    cfg = compose_cfg("data=csv", f"data.path={path}", f"data.target={target}", f"data.task={task}", "data.drop=[id]",
                      *extra, "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", "callbacks.progress_bar=null",
                      "logger=none", f"paths.output_dir={tmp_path / 'run'}")
    metrics = run(cfg)
    model = zoo.load_model(metrics["best_checkpoint"])
    dm = _module(path, target=target, task=task, **({"log_target": True} if task == "regress" else {}))
    test = dm.split_rows["test"].tolist()
    unseen = _write_csv(tmp_path / "new.csv", [rows[i] for i in test])  # the test rows, target column and all
    names, preds = predict_table(model, [unseen], top_k=2)
    assert names[0] == f"{unseen}:2" and len(preds) == len(test)
    with torch.no_grad():
        out = model(dm.splits["test"][0])
    if task == "classify":
        expected = out.softmax(-1)
        for row, probs in zip(preds, expected, strict=True):
            assert dict(row) == pytest.approx({c: p for c, p in zip(dm.classes, probs.tolist(), strict=True)}, abs=1e-6)
    else:
        assert preds == pytest.approx(to_target_units(out[:, 0], model.zoo_preprocessing).tolist(), rel=1e-5)
        assert 80 < min(preds) and max(preds) < 160  # prices, not standardised logs
    assert zoo_main(["predict", metrics["best_checkpoint"], str(unseen)]) == 0
    printed = capsys.readouterr().out
    assert f"{unseen}:2: " + ("price = " if task == "regress" else "") in printed
    (tmp_path / "short.csv").write_text("id,size\n1,12\n")
    assert zoo_main(["predict", metrics["best_checkpoint"], str(tmp_path / "short.csv")]) == 2
    err = capsys.readouterr().err
    assert "short.csv lacks the column" in err and "'colour'" in err and "(it needs size, colour" in err

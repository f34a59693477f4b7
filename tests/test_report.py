"""The report (segbench.report): the papers' rows beside the runs and why they do or do not compare,
the Pareto front, one list of sections rendered as Markdown and HTML, optional inputs.

Tables are built here by hand, in the layout of the collected Parquet tables."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segbench.collect import read_table
from segbench.data.voc import class_names, mask_dir, read_ids
from conftest import write_table
from segbench.models import list_models, model_info
from segbench.report import write_report
from segbench.report.figures import pareto_front
from segbench.report.papers import COLUMNS, paper_by_paper, paper_crf_gains, paper_params, papers_speed_table
from segbench.report.tables import accuracy_table, hardest_images, speed_table, whole_image

REPO = Path(__file__).resolve().parents[1]
SCALES = "0.5 0.75 1.0 1.25 1.5 1.75"  # DeepLab v3's multi-scale evaluation
PAPER = REPO / "config" / "paper_results.csv"


def _paper_row(**cells: str) -> dict[str, str]:
    """A row of the papers' table: a VOC 2012 val mIoU of DeepLab v3 OS8 on train_aug unless told otherwise."""
    row = dict.fromkeys(COLUMNS, "")
    row |= {
        "paper": "DeepLab v3", "arxiv": "1706.05587", "variant": "ASPP OS8", "backbone": "ResNet-101",
        "dataset": "VOC2012", "split": "val", "training_data": "train_aug", "crf": "no", "coco_pretrain": "no",
        "metric": "mIoU", "value": "78.51", "unit": "%", "source": "Table 6", "arch": "deeplabv3_resnet101_os8",
    }
    return row | cells


def _metrics(runs_: dict[str, str], *, dataset: str = "voc2012", crf: bool = True, **columns: object) -> pd.DataFrame:
    """Whole-image rows of each run (name -> arch), without and with the CRF; ``columns``: constant extra
    columns such as the evaluation setting."""
    rows = []
    for i, (model, arch) in enumerate(runs_.items()):
        for with_crf in (False, True) if crf else (False,):
            value = 0.5 + 0.1 * i + 0.05 * with_crf
            rows.append({
                "dataset": dataset, "split": "val", "model": model, "arch": arch, "crf": with_crf, "region": "image",
                "metric": "mIoU", "class": None, "value": value, "ci_low": value - 0.02, "ci_high": value + 0.02,
                "git_commit": "abc123",
            })
    return pd.DataFrame(rows).assign(**columns)


def _comparable(table: pd.DataFrame, variant: str) -> list[str]:
    return table.loc[table["variant"] == variant, "comparable"].tolist()


def test_each_paper_row_beside_its_runs_and_why_they_do_not_compare() -> None:
    refinenet = {"paper": "RefineNet", "arxiv": "1611.06612", "variant": "RefineNet", "arch": "refinenet_resnet101"}
    fcn = {"paper": "FCN", "arxiv": "1411.4038", "variant": "FCN-8s", "backbone": "VGG16", "arch": "fcn8s"}
    paper = pd.DataFrame([
        _paper_row(),
        _paper_row(variant="ASPP OS8 MS+flip", extras="multi-scale+flip", value="79.77"),
        _paper_row(variant="ASPP OS8 MS+flip+COCO", extras="multi-scale+flip", coco_pretrain="yes", value="82.70"),
        _paper_row(variant="DeepLabv3", split="test", training_data="train_aug + trainval", coco_pretrain="yes", value="85.7"),
        _paper_row(variant="ASPP OS16", arch="deeplabv3_resnet101", value="77.21"),
        _paper_row(variant="block7 OS8", backbone="ResNet-50", arch="", value="75.18"),
        _paper_row(**refinenet, backbone="ResNet-101/152", value="83.4"),
        _paper_row(**fcn, dataset="VOC2011", split="seg11valid", value="62.7"),
        _paper_row(**fcn, metric="inference_time", value="175", unit="ms/image"),
    ])
    metrics = pd.concat([
        _metrics({"os8": "deeplabv3_resnet101_os8", "fcn": "fcn8s"}, eval_scales=SCALES, eval_flip=True),
        _metrics({"refine": "refinenet_resnet101"}),  # written before the evaluation columns: one scale, no flip
    ], ignore_index=True)
    tables = dict(paper_by_paper(paper, whole_image(metrics), None, "train_aug"))
    assert list(tables) == ["DeepLab v3 (arXiv:1706.05587)", "RefineNet (arXiv:1611.06612)", "FCN (arXiv:1411.4038)"]
    v3 = tables["DeepLab v3 (arXiv:1706.05587)"]
    assert _comparable(v3, "ASPP OS8 MS+flip") == ["yes"]
    assert v3.loc[v3["variant"] == "ASPP OS8 MS+flip", ["run", "reproduced", "TTA"]].values.tolist() == [
        ["os8", "50.0 [48.0, 52.0]", "MS+flip"]
    ]
    assert _comparable(v3, "ASPP OS8") == ["no: different evaluation setting (paper single scale, run MS+flip)"]
    assert _comparable(v3, "ASPP OS8 MS+flip+COCO") == ["no: COCO pretraining"]
    assert _comparable(v3, "DeepLabv3") == [
        "no: test server; COCO pretraining; different training data (train_aug + trainval); "
        "different evaluation setting (paper single scale, run MS+flip)"
    ]
    assert _comparable(v3, "ASPP OS16") == ["no: no run of deeplabv3_resnet101"]
    assert _comparable(v3, "block7 OS8") == ["no: no segbench model for this row"]
    refine = tables["RefineNet (arXiv:1611.06612)"]
    assert refine["comparable"].tolist() == ["no: different backbone (ResNet-101/152 in the paper)"]
    fcn_table = tables["FCN (arXiv:1411.4038)"]  # the speed row is set beside the bench, not here
    assert fcn_table["comparable"].tolist() == [
        "no: different split (VOC2011 seg11valid); different evaluation setting (paper single scale, run MS+flip)"
    ]

    # On the embedded dataset, without the training split, at a reduced width: said so.
    embedded = _metrics({"os8": "deeplabv3_resnet101_os8"}, dataset="tiny", eval_scales=SCALES, eval_flip=True)
    bench = pd.DataFrame([{"model": "os8", "arch": "deeplabv3_resnet101_os8", "width": 0.125, "metric": "fps", "value": 3.0}])
    v3 = dict(paper_by_paper(paper, whole_image(embedded), bench, None))["DeepLab v3 (arXiv:1706.05587)"]
    assert _comparable(v3, "ASPP OS8 MS+flip") == ["no: embedded data; the runs' training split not given; width 0.125"]


def test_a_crf_row_is_set_beside_the_run_with_the_crf() -> None:
    v1 = {"paper": "DeepLab v1", "arxiv": "1412.7062", "backbone": "VGG16", "arch": "deeplab_v1_largefov"}
    paper = pd.DataFrame([
        _paper_row(**v1, variant="DeepLab-LargeFOV", value="62.25"),
        _paper_row(**v1, variant="DeepLab-CRF-LargeFOV", crf="yes", value="67.64"),
    ])
    with_crf = _metrics({"v1": "deeplab_v1_largefov"})
    table = paper_by_paper(paper, whole_image(with_crf), None, "train_aug")[0][1]
    assert table[["run", "reproduced", "comparable"]].values.tolist() == [
        ["v1", "50.0 [48.0, 52.0]", "yes"], ["v1 +CRF", "55.0 [53.0, 57.0]", "yes"]
    ]
    plain = _metrics({"v1": "deeplab_v1_largefov"}, crf=False)
    table = paper_by_paper(paper, whole_image(plain), None, "train_aug")[0][1]
    assert table["comparable"].tolist() == ["yes", "no: no run with the CRF"]


def test_accuracy_table_gives_each_run_in_multiples_of_the_majority_baseline() -> None:
    """Paired over the images both were scored on; no column without the baseline's matrices."""
    from segbench.stats import confusion_table, miou
    from test_stats import C, _images

    run = _images(20)
    floor = np.zeros_like(run)
    floor[:, :, 0] = run.sum(axis=2)  # every pixel predicted class 0
    names = {"m": run, "majority class (0)": floor}
    confusion = pd.concat(
        [confusion_table(m, [f"img{i}" for i in range(len(m))]).assign(model=model, crf=False) for model, m in names.items()]
    )
    metrics = pd.concat([
        _metrics({"m": "fcn8s", "majority class (0)": "baseline"}, crf=False),
        pd.DataFrame([{"model": "m", "arch": "fcn8s", "crf": False, "region": "image", "metric": "IoU", "class": str(c)} for c in range(C)]),
    ])
    table = accuracy_table(metrics, pd.DataFrame(), confusion=confusion).set_index("model")
    ratio = miou(run.sum(axis=0)) / miou(floor.sum(axis=0))
    estimate, low, high = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", table.loc["m", "× baseline"]).groups())
    assert estimate == pytest.approx(ratio, abs=0.05) and 1 < low < estimate < high
    assert table.loc["majority class (0)", "× baseline"] == ""
    without = accuracy_table(metrics, pd.DataFrame(), confusion=confusion[confusion["model"] == "m"])
    assert "× baseline" not in without.columns


def test_accuracy_table_takes_the_closest_paper_row_of_the_same_setting() -> None:
    dilation = {"paper": "Dilation", "arxiv": "1511.07122", "backbone": "VGG16", "coco_pretrain": "yes", "arch": "dilation_frontend"}
    v2 = {"paper": "DeepLab v2", "arxiv": "1606.00915", "backbone": "VGG16", "variant": "LargeFOV", "arch": "deeplab_v2_vgg16_largefov"}
    paper = pd.DataFrame([
        _paper_row(**dilation, variant="front end", split="test", value="71.3", source="Table 4"),
        _paper_row(**dilation, variant="front end", value="69.8", source="Table 3"),
        _paper_row(**dilation, variant="front end + CRF", crf="yes", value="70.9", source="Table 3"),  # made up
        _paper_row(**v2, value="65.76", source="Table 3"),
        _paper_row(**v2, crf="yes", value="69.84", source="Table 4"),  # in truth Table 3: the gain must come from one
        _paper_row(**v2, metric="params", value="20.5", dataset="", split="", crf="", source="Table 2"),
    ])
    metrics = _metrics({"front": "dilation_frontend", "v2": "deeplab_v2_vgg16_largefov"})
    table = accuracy_table(metrics, paper, train_split="train_aug").set_index("model")
    assert table.loc["front", ["paper mIoU", "paper mIoU +CRF", "paper CRF gain"]].tolist() == pytest.approx([69.8, 70.9, 1.1])
    assert table.loc["front", "paper source"] == "VOC2012 val, arXiv:1511.07122 Table 3"
    # Rows of two tables: no paper CRF gain from them.
    assert table.loc["v2", ["paper mIoU", "paper mIoU +CRF"]].tolist() == [65.76, 69.84]
    assert np.isnan(table.loc["v2", "paper CRF gain"])
    gains = paper_crf_gains(paper)
    assert gains[["arch", "paper CRF gain"]].values.tolist() == [["dilation_frontend", pytest.approx(1.1)]]
    assert paper_params(paper, "deeplab_v2_vgg16_largefov") == 20.5 and np.isnan(paper_params(paper, "fcn8s"))


def test_the_papers_table_names_registered_models_as_the_registry_does() -> None:
    """Every `arch` is a registered model; the rows a model's registry entry points to
    (segbench models' paper_variant, paper_crf_variant, paper_params_variant) name it, so that the
    report and `segbench models` match the same rows."""
    paper = read_table(PAPER)
    named = paper["arch"].str.split()
    assert set().union(*named) <= set(list_models())
    for name in list_models():
        info = model_info(name)
        variants = {info.paper_variant, info.paper_crf_variant, info.paper_params_variant} - {None}
        rows = named[(paper["paper"] == info.family) & paper["variant"].isin(variants)]
        assert len(rows) >= len(variants) and all(name in arch for arch in rows), name


def test_paper_values_on_the_papers_table() -> None:
    """Moved from test_model_summary (the report's matching, once through the registry, now through
    the `arch` column): the figures it sets beside a run."""
    paper = read_table(PAPER)
    assert paper_params(paper, "fcn8s") == 134.0
    metrics = _metrics({"front": "dilation_frontend", "aspp": "deeplab_v2_vgg16_aspp_l", "r50": "deeplabv3_resnet50"})
    table = accuracy_table(metrics, paper, train_split="train_aug").set_index("model")
    # val preferred over test; CRF selects the row.
    assert table.loc["front", ["paper mIoU", "paper source"]].tolist() == [69.8, "VOC2012 val, arXiv:1511.07122 Table 3"]
    assert table.loc["aspp", "paper mIoU +CRF"] == 71.57
    assert np.isnan(table.loc["r50", "paper mIoU"]) and table.loc["r50", "paper source"] == ""


def test_pareto_front() -> None:
    points = pd.DataFrame(
        {"FPS": [1.0, 2.0, 2.0, 4.0, 0.5, 4.0], "mIoU": [80.0, 70.0, 75.0, 60.0, 80.0, 50.0]}, index=list("abcdef")
    )
    # b: c is as fast and better; e: a is as good and faster; f: d is as fast and better.
    assert pareto_front(points, "FPS", "mIoU").tolist() == [True, False, True, True, False, False]
    assert pareto_front(points.loc[["a", "a"]].set_axis(["x", "y"]), "FPS", "mIoU").all()  # ties dominate nothing


def test_speed_table_takes_new_measures_and_missing_context() -> None:
    bench = pd.DataFrame([
        {"model": "m", "arch": "fcn8s", "width": 0.0625, "input_height": 40, "input_width": 56, "batch": b,
         "metric": metric, "value": value, "unit": unit}
        for metric, value, unit, b in [("latency_median", 10.0, "ms", 1), ("throughput", 150.0, "images/s", 8),
                                        ("new_measure", 3.0, "J", 1)]
    ])
    table = speed_table(bench, pd.DataFrame())
    assert table.columns.tolist() == [
        "model", "arch", "paper params (M)", "width", "input_height", "input_width", "latency median (ms)",
        "throughput (images/s)", "new_measure (J)", "throughput batch",
    ]
    assert table.iloc[0][["width", "throughput batch", "new_measure (J)"]].tolist() == ["0.0625", 8, 3.0]


# --- the whole report, on a generated dataset -------------------------------------------------


def _headings_md(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,3} ", line)]


def _headings_html(text: str) -> list[str]:
    import html

    return [html.unescape(title) for title in re.findall(r"<h[1-3]>(.*?)</h[1-3]>", text)]


@pytest.fixture()
def inputs(tiny_dataset: Path, tmp_path: Path) -> dict[str, Path]:
    """The collected tables of two runs on the embedded dataset, predictions = the ground truth."""
    ids = read_ids(tiny_dataset, "val")
    runs_dir = tmp_path / "runs"
    models = {"fcn8s_tiny": "fcn8s", "deeplab_tiny": "deeplabv3_resnet101_os8"}
    for model in models:
        for stage in ("pred", "crf"):
            (runs_dir / model / stage).mkdir(parents=True)
            for image_id in ids:
                shutil.copy(mask_dir(tiny_dataset) / f"{image_id}.png", runs_dir / model / stage / f"{image_id}.png")
    metrics = _metrics(models, dataset="tiny")
    names = class_names(tiny_dataset)
    per_class = [
        {**row, "metric": metric, "class": name, "value": 0.5, "ci_low": np.nan, "ci_high": np.nan}
        for row in metrics.to_dict("records") for name in names for metric in ("IoU", "BF")
    ]
    paths = {name: tmp_path / f"{name}.parquet" for name in ("metrics", "bench", "paper")}
    write_table(pd.concat([metrics, pd.DataFrame(per_class)], ignore_index=True), paths["metrics"], kind="metrics")
    write_table(pd.DataFrame([
        {"model": model, "arch": arch, "width": 0.0625, "input_height": 48, "input_width": 64, "batch": 1,
         "metric": metric, "value": value, "unit": unit}
        for model, arch in models.items()
        for metric, value, unit in [("latency_median", 5.0, "ms"), ("fps", 200.0, "images/s"), ("params", 0.5, "M")]
    ]), paths["bench"], kind="bench")
    write_table(read_table(PAPER), paths["paper"], kind="paper_results")
    return {**paths, "data": tiny_dataset, "runs": runs_dir, "out": tmp_path / "report"}


def _report(inputs: dict[str, Path], **optional: Path) -> tuple[str, str]:
    index = write_report(
        metrics_path=inputs["metrics"], bench_path=inputs["bench"], paper_path=inputs["paper"], out_dir=inputs["out"],
        data_root=inputs["data"], split="val", runs_dir=inputs["runs"], samples=2, **optional,
    )
    return (inputs["out"] / "report.md").read_text(), index.read_text()


def test_markdown_and_html_list_the_same_sections(inputs: dict[str, Path]) -> None:
    markdown, page = _report(inputs)
    headings = _headings_md(markdown)
    assert headings == _headings_html(page)
    assert {"Accuracy (%, VOC protocol)", "Speed and size", "The papers' speed and size beside ours", "The papers, one by one",
            "DeepLab v3 (arXiv:1706.05587)", "Mean IoU", "Accuracy against speed", "The CRF's gain per run"} <= set(headings)
    figures = sorted(p.name for p in (inputs["out"] / "figures").iterdir())
    assert figures == sorted([
        "miou.png", "speed_accuracy.png", "per_class_iou.png", "crf_gain.png", "qualitative_fcn8s_tiny.png",
        "qualitative_deeplab_tiny.png",
    ])
    assert all(f"figures/{name}" in markdown and f'src="figures/{name}"' in page for name in figures)
    # Every table also on its own page, for snakemake --report.
    tables = {p.stem for p in (inputs["out"] / "tables").iterdir()}
    assert {"accuracy_voc_protocol", "speed_and_size", "deeplab_v3_arxiv_1706_05587"} <= tables
    assert len(tables) == sum(bool(re.fullmatch(r"\|(:?-+:?\|)+", line)) for line in markdown.splitlines())
    # The embedded runs are not comparable, and the report says why.
    assert "no: embedded data; the runs' training split not given; width 0.0625" in page
    assert "Boundary F-score per class (%, no CRF)" in headings and "BF" in markdown


def test_missing_optional_inputs_skip_their_sections(inputs: dict[str, Path], tmp_path: Path) -> None:
    optional = ("Hardest images", "Trimap", "Equal compute", "The papers' claims", "CRF speed (VOC size)", "CRF search", "Training")
    headings = _headings_md(_report(inputs)[0])
    assert not set(optional) & set(headings)

    metrics = pd.read_parquet(inputs["metrics"])
    trimap = metrics[metrics["class"].isna()].assign(region="trimap")
    trimap = pd.concat([trimap.assign(band_px=band) for band in (1, 5, 10)], ignore_index=True)
    write_table(pd.concat([metrics, trimap], ignore_index=True), inputs["metrics"], kind="metrics")
    per_image = pd.DataFrame([
        {"dataset": "tiny", "split": "val", "model": model, "crf": crf, "image": f"img{i}", "pixel_acc": 0.9,
         "mIoU": 0.1 * i + 0.01 * crf, "BF": 0.5}
        for model in ("fcn8s_tiny", "deeplab_tiny") for crf in (False, True) for i in range(12)
    ])
    write_table(per_image, tmp_path / "per_image.parquet", kind="per_image")
    markdown, page = _report(inputs, per_image_path=tmp_path / "per_image.parquet")
    headings = _headings_md(markdown)
    assert {"Hardest images", "Trimap"} <= set(headings) and headings == _headings_html(page)
    assert (inputs["out"] / "figures" / "trimap.png").stat().st_size > 1000
    hardest = hardest_images(per_image)
    assert hardest["image"].tolist() == [f"img{i}" for i in range(10)]
    assert hardest.columns.tolist() == ["image", "mean mIoU", "deeplab_tiny", "deeplab_tiny +CRF", "fcn8s_tiny", "fcn8s_tiny +CRF"]
    assert hardest.iloc[1].tolist() == ["img1", pytest.approx(10.5), 10, 11, 10, 11]
    assert "img9" in (inputs["out"] / "tables" / "hardest_images.html").read_text()
    # The trimap rows stay out of the whole-image tables: a header and two runs.
    assert (inputs["out"] / "tables" / "accuracy_voc_protocol.html").read_text().count("<tr") == 3


def test_papers_speed_beside_ours_with_their_hardware() -> None:
    paper = pd.DataFrame([
        _paper_row(paper="FCN", variant="FCN-8s", metric="inference_time", value="175", unit="ms/image", extras="", arch="fcn8s"),
        _paper_row(paper="DeepLab v2", variant="DeepLab", metric="fps", value="8", unit="frames/s", extras="Titan X", arch=""),
    ])
    bench = pd.DataFrame([
        {"model": "f", "arch": "fcn8s", "width": 1.0, "input_height": 512, "input_width": 512, "metric": metric,
         "value": value, "unit": unit}
        for metric, value, unit in [("latency_median", 120.0, "ms"), ("fps", 8.3, "images/s")]
    ])
    table = papers_speed_table(paper, bench)
    assert table[["paper figure", "paper hardware / setting", "run", "ours", "device", "input"]].values.tolist() == [
        ["175 ms/image", "not stated", "f", "120 ms", "", "512x512"], ["8 frames/s", "Titan X", "", "—", "", ""],
    ]

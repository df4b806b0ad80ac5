"""The page's photos: new ones decoded and predicted in one batch, each content once, kept in a bounded cache."""

from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from muffin_v_chihuahua import images
from muffin_v_chihuahua.classifier import Prediction
from muffin_v_chihuahua.photo_predictions import DISPLAY_SIDE, PredictedPhoto, ResultCache, predict_photos
from muffin_v_chihuahua.prediction_slots import Busy, PredictionSlots
from tests import corpus

WAIT = 60.0


class CountingModel:
    """The real classifier, recording the size of each batch it is asked to predict."""

    def __init__(self, classifier, model_sha256: str | None = None) -> None:
        self.classifier = classifier
        self.card = classifier.card
        self.engine = classifier.engine
        self.input_size = classifier.input_size
        self.model_sha256 = model_sha256 or classifier.model_sha256
        self.batches: list[int] = []

    def predict(self, batch: Sequence[np.ndarray], heatmap: bool = False) -> list[Prediction]:
        self.batches.append(len(batch))
        return self.classifier.predict(batch, heatmap)


@pytest.fixture
def photos(labelled_photos) -> list[bytes]:
    return [path.read_bytes() for _, path in labelled_photos[:2] + labelled_photos[-2:]]


def test_new_photos_are_predicted_in_one_batch_in_order_and_a_bad_one_is_its_error(classifier, photos):
    model, cache = CountingModel(classifier), ResultCache()
    broken = corpus.DATASET_PHOTO.read_bytes()[:2000]
    results = predict_photos(model, [photos[0], b"not a photo", photos[1], broken], cache, PredictionSlots(1), WAIT)
    assert model.batches == [2]
    good, not_an_image, other, truncated = results
    assert isinstance(not_an_image, images.ImageError) and not_an_image.kind == "not-an-image"
    assert isinstance(truncated, images.ImageError) and truncated.kind == "corrupt"
    for result, photo in ((good, photos[0]), (other, photos[1])):
        assert isinstance(result, PredictedPhoto)
        [alone] = classifier.predict([images.decode(photo, classifier.input_size)])
        assert result.prediction.verdict == alone.verdict
        np.testing.assert_allclose(result.prediction.probability, alone.probability, rtol=1e-4, strict=False)
        original = images.open_rgb(photo)
        assert max(result.picture.size) == min(DISPLAY_SIDE, max(original.size))


def test_a_rerun_predicts_only_the_new_photo_and_each_content_once(classifier, photos):
    model, cache, slots = CountingModel(classifier), ResultCache(), PredictionSlots(1)
    first = predict_photos(model, photos[:2], cache, slots, WAIT)
    again = predict_photos(model, [photos[1], photos[2], photos[0], photos[2]], cache, slots, WAIT)
    assert model.batches == [2, 1]  # the same content twice in one run is predicted once
    assert again[0] is first[1] and again[2] is first[0] and again[1] is again[3]


def test_another_model_judges_the_photos_anew(classifier, photos):
    cache, slots = ResultCache(), PredictionSlots(1)
    predict_photos(CountingModel(classifier), photos[:2], cache, slots, WAIT)
    released = CountingModel(classifier, model_sha256="the sha256 of a newly released model")
    predict_photos(released, photos[:2], cache, slots, WAIT)
    assert released.batches == [2]


def test_no_free_slot_is_busy_for_new_photos_while_known_ones_need_none(classifier, photos):
    model, cache, slots = CountingModel(classifier), ResultCache(), PredictionSlots(1)
    [known] = predict_photos(model, photos[:1], cache, slots, WAIT)
    with slots.held(WAIT):  # another session predicts
        with pytest.raises(Busy):
            predict_photos(model, photos[:2], cache, slots, wait=0)
        assert predict_photos(model, photos[:1], cache, slots, wait=0) == [known]
    assert model.batches == [1] and len(cache) == 1


def test_the_cache_keeps_the_most_recently_used():
    cache = ResultCache(capacity=2)
    one, two, three = (images.ImageError("empty", name) for name in ("one", "two", "three"))
    cache.put(("1",), one)
    cache.put(("2",), two)
    assert cache.get(("1",)) is one  # now the most recently used
    cache.put(("3",), three)
    assert (cache.get(("1",)), cache.get(("2",)), cache.get(("3",))) == (one, None, three) and len(cache) == 2


def test_a_cached_error_holds_its_reason_not_the_bytes(classifier):
    [error] = predict_photos(CountingModel(classifier), [b"\xff\xd8 truncated"], ResultCache(), PredictionSlots(1), 0)
    assert isinstance(error, images.ImageError) and error.kind == "corrupt" and str(error).startswith("the JPEG")
    assert error.__traceback__ is None and error.__context__ is None


def test_pictures_are_shown_upright_rgb(classifier):
    sideways = Image.new("RGB", (900, 300), (200, 120, 40))
    exif = sideways.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° to show it
    data = corpus.encode(sideways, "JPEG", exif=exif)
    [result] = predict_photos(CountingModel(classifier), [data], ResultCache(), PredictionSlots(1), WAIT)
    assert isinstance(result, PredictedPhoto) and result.picture.mode == "RGB"
    assert result.picture.size == (DISPLAY_SIDE * 300 // 900, DISPLAY_SIDE)

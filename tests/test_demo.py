"""demo: the bundled, labelled photos."""

from muffin_v_chihuahua import demo


def test_every_bundled_photo_is_listed_with_its_label(labelled_photos):
    photos = demo.photos()
    assert sorted(photo.name for photo in photos) == sorted(f"{label}/{path.name}" for label, path in labelled_photos)
    assert {photo.label for photo in photos} == {"chihuahua", "muffin"}
    assert all(photo.file.read_bytes()[:2] == b"\xff\xd8" for photo in photos[:5])


def test_the_photos_source_is_credited():
    assert "mlatsjsu/workshop-chihuahua-vs-muffin" in demo.credit()

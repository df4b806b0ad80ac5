"""text_table: cells in columns as wide as their widest cell."""

from muffin_v_chihuahua.text_table import aligned


def test_cells_line_up_in_columns_as_wide_as_their_widest_cell_without_trailing_spaces():
    assert aligned([("photo", "verdict", "p"), ("a-long-name.jpg", "muffin", "99.0%"), ("b.jpg", "neither", "")]) == [
        "photo            verdict  p",
        "a-long-name.jpg  muffin   99.0%",
        "b.jpg            neither",
    ]


def test_no_rows_is_no_lines():
    assert aligned([]) == []

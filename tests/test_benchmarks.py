"""benchmarks/__init__.py: a measured block written into a document that holds other blocks."""

from benchmarks import write_block

SCALING, BATCH, END = (
    "<!-- MEASURED: make bench-scaling -->",
    "<!-- MEASURED: make bench-batch -->",
    "<!-- /MEASURED -->",
)


def test_a_block_replaces_only_its_own_when_another_ends_alike_before_it(tmp_path):
    document = tmp_path / "scaling.md"
    document.write_text(f"# Pods\n{SCALING}\npods\n{END}\n## Ray\n{BATCH}\nold\n{END}\ntail\n")
    for _ in range(2):  # a second run replaces the first's block: nothing is repeated
        write_block(document, BATCH, END, f"{BATCH}\nnew\n{END}")
        assert document.read_text() == f"# Pods\n{SCALING}\npods\n{END}\n## Ray\n{BATCH}\nnew\n{END}\ntail\n"


def test_a_new_document_holds_the_block(tmp_path):
    write_block(tmp_path / "new.md", SCALING, END, f"{SCALING}\npods\n{END}")
    assert (tmp_path / "new.md").read_text() == f"{SCALING}\npods\n{END}\n"

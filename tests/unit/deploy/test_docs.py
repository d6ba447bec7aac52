"""The committed AsyncAPI and OpenAPI documents are the ones the code generates."""

from deploy.docs import generate


def test_the_committed_api_documents_match_the_code() -> None:
    stale = [str(path) for path, text in generate().items() if not path.exists() or path.read_text() != text]
    assert not stale, f"out of date, run `make docs`: {stale}"

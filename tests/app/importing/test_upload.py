import pytest

from app.importing.upload import UploadError, batch_from_csv, batch_from_json
from tests.factories import bulk_row


def test_json_batch_reports_unknown_columns():
    batch = batch_from_json([bulk_row(warmup="yes")], max_rows=10)
    assert batch.ignored_columns == ["warmup"]


@pytest.mark.parametrize(("payload", "status"), [({"a": 1}, 422), ([], 422), ("x", 422)])
def test_json_batch_shape(payload, status):
    with pytest.raises(UploadError) as caught:
        batch_from_json(payload, max_rows=10)
    assert caught.value.status == status
    assert caught.value.message.startswith("body:")


def test_too_many_rows():
    with pytest.raises(UploadError) as caught:
        batch_from_json([bulk_row()] * 3, max_rows=2)
    assert caught.value.status == 413


def test_csv_batch_keeps_cells_as_text():
    data = b"smtpEmailAddress,smtpPort,smtpPassword,extra\na@b.co,0587,007,x\n"
    batch = batch_from_csv(data, max_rows=10)
    assert batch.records == [{"smtpEmailAddress": "a@b.co", "smtpPort": "0587",
                              "smtpPassword": "007"}]
    assert batch.ignored_columns == ["extra"]


def test_csv_with_bom_and_blank_cells():
    batch = batch_from_csv("\ufeffsmtpEmailAddress,smtpPort\na@b.co,\n".encode(), max_rows=10)
    assert batch.records == [{"smtpEmailAddress": "a@b.co", "smtpPort": ""}]


@pytest.mark.parametrize("data", [b"", b"smtpEmailAddress\n", b"\xff\xfe\x00bad"])
def test_csv_unusable(data):
    with pytest.raises(UploadError) as caught:
        batch_from_csv(data, max_rows=10)
    assert caught.value.status == 422

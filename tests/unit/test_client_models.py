"""The runtime's clients load their models without listing every service botocore knows (cold start)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import botocore
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError
from polos.aws import settings

DATA = Path(botocore.__file__).parent / "data"


@pytest.fixture
def fresh_loader(aws: None) -> Iterator[None]:
    settings._model_loader.cache_clear()
    settings.reset()
    yield
    settings._model_loader.cache_clear()
    settings.reset()


def test_first_clients_list_only_their_own_services_directories(
    fresh_loader: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[Path] = []
    real = os.listdir

    def listdir(path: str = ".") -> list[str]:
        listed.append(Path(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    settings.dynamodb()
    settings.sqs()
    monkeypatch.undo()
    below_data = {path.relative_to(DATA) for path in listed if path.is_relative_to(DATA)}
    # The versions of the runtime's services (the scheduler's: the API's schedules), not the ~400 services.
    assert below_data == {Path("dynamodb"), Path("sqs"), Path("scheduler")}


def test_models_are_botocores_latest_and_other_services_are_refused(fresh_loader: None) -> None:
    plain = botocore.loaders.create_loader()
    for service, client in (("dynamodb", settings.dynamodb()), ("sqs", settings.sqs())):
        model = client.meta.service_model
        assert model.api_version == plain.determine_latest_version(service, "service-2")
        operations = plain.load_service_model(service, "service-2")["operations"]
        assert sorted(model.operation_names) == sorted(operations)
    with pytest.raises(UnknownServiceError):
        settings._session().create_client("s3")

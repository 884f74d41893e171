"""What ``tensorfab serve`` checks before it starts, and image errors without object reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorfab.data.imagefolder import read_image_bytes
from tensorfab.errors import TensorfabError
from tensorfab.serve.app import ServerOptions
from tensorfab.serve.server import Bind, check_bindable, check_models, check_port
from tensorfab.tasks.image_classification import _image_problem


@pytest.mark.parametrize("port", [-1, 65536, 99999])
def test_a_port_outside_the_range_is_one_error(port: int) -> None:
    with pytest.raises(TensorfabError) as info:
        check_bindable(Bind(port=port))
    assert str(info.value) == f"--port {port}: choose a port from 0 to 65535"


def test_ports_in_the_range_pass_the_range_check() -> None:
    check_port(0)
    check_port(65535)


def test_models_to_load_must_be_in_the_repository(tmp_path: Path) -> None:
    for folder in ("a/1", "b/2"):
        (tmp_path / folder).mkdir(parents=True)
    check_models(ServerOptions(repository=tmp_path, models=["b", "a"]))
    check_models(ServerOptions(repository=tmp_path))  # None: every model
    with pytest.raises(TensorfabError) as info:
        check_models(ServerOptions(repository=tmp_path, models=["a", "nope"]))
    assert str(info.value) == f"model 'nope': not in the repository {tmp_path} (models: a, b)"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TensorfabError, match=r"\(models: none\)$"):
        check_models(ServerOptions(repository=empty, models=["a"]))


def test_an_unreadable_image_is_named_without_pythons_object_repr() -> None:
    with pytest.raises(TensorfabError) as info:
        read_image_bytes(b"not an image", 1, 28, "request body")
    message = _image_problem(info.value)
    assert message == "request body: not an image PIL can read (cannot identify image file)"
    plain = TensorfabError("request body: unreadable image <_io.BytesIO object at 0x7f32aa>")
    assert _image_problem(plain) == ("request body: not an image PIL can read (unreadable image)")


def test_idle_connections_outlive_a_client_pools_keep_alive(tmp_path: Path) -> None:
    import httpx

    from tensorfab.serve.server import build_server

    server = build_server(ServerOptions(repository=tmp_path), Bind())
    client_expiry = httpx.Limits().keepalive_expiry  # 5 s, uvicorn's own default too
    assert server.config.timeout_keep_alive > client_expiry

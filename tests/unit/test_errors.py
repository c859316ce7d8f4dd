from espfast.control.constants import NotifyType, is_error_notify
from espfast.control.errors import LocalProtocolError, ProtocolError, RemoteProtocolError


def test_remote_error_defaults_to_invalid_syntax() -> None:
    err = RemoteProtocolError("truncated header")
    assert err.notify == NotifyType.INVALID_SYNTAX
    assert err.notify_data == b""
    assert str(err) == "truncated header"
    assert isinstance(err, ProtocolError)


def test_remote_error_carries_notify_and_data() -> None:
    err = RemoteProtocolError(
        "wrong group", notify=NotifyType.INVALID_KE_PAYLOAD, notify_data=b"\x00\x13"
    )
    assert err.notify == NotifyType.INVALID_KE_PAYLOAD
    assert err.notify_data == b"\x00\x13"


def test_local_error_is_not_remote() -> None:
    assert not isinstance(LocalProtocolError("x"), RemoteProtocolError)


def test_error_notify_ranges() -> None:
    assert NotifyType.AUTHENTICATION_FAILED.is_error
    assert not NotifyType.COOKIE.is_error
    assert is_error_notify(8000)
    assert not is_error_notify(16384)
    assert not is_error_notify(0)

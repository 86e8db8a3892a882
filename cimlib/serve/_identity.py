"""Who is signing in: a jupyter_server ``IdentityProvider`` for ``cim serve``.

Two modes:

``password``
    Our own sign-in form (user id + password, checked against the scrypt hashes of the password file).
    The signed-in user rides in jupyter_server's signed cookie.
``header``
    A bank's SSO reverse proxy authenticates the user and passes the user id in a header
    (``X-Remote-User`` by default). The header is believed **only** from the configured proxy addresses,
    compared with the TCP peer address, never with ``X-Forwarded-For``.

In both modes the user must exist in ``parameters/access.yaml``. On every authenticated request the
provider drops any identity token the client sent and stamps a fresh, server-signed one
(:mod:`cimlib.serve._token`) that Voila passes to the app kernel.
"""

from __future__ import annotations

import html
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.auth.login import LoginFormHandler
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httputil import url_concat
from traitlets import Enum, Float, List, Unicode

from cimlib.serve._passwords import check_password, hash_password, load_passwords
from cimlib.serve._token import DEFAULT_TTL, SECRET_ENV, TOKEN_HEADER, sign_identity

log = logging.getLogger(__name__)

_KNOWN_USER_TTL = 30.0
# A hash to check against when the user is unknown, so a wrong user id costs as long as a wrong password.
_DUMMY_HASH = hash_password("no-such-user")


def normalize_remote_user(value: str) -> str:
    """Turn an SSO user name into an access.yaml user id.

    Strips a Windows domain (``BANK\\alice``) and a Kerberos/e-mail realm (``alice@BANK.CN``), trims and
    lower-cases.

    Parameters
    ----------
    value : str
        The header's value.

    Returns
    -------
    str
        The user id to look up.
    """
    name = value.strip()
    if "\\" in name:
        name = name.rsplit("\\", 1)[1]
    if "@" in name:
        name = name.split("@", 1)[0]
    return name.strip().lower()


def _peer_ip(handler: web.RequestHandler) -> str:
    """The TCP peer's address (not X-Forwarded-For, even when tornado trusts x-headers)."""
    context = getattr(handler.request.connection, "context", None)
    address = getattr(context, "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(handler.request.remote_ip or "")


def _ip_allowed(ip: str, networks: list[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for net in networks:
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            log.warning("ignoring bad trusted proxy entry %r", net)
    return False


class CimIdentityProvider(IdentityProvider):
    """Sign-in for ``cim serve``: demo passwords or a trusted SSO header, users from access.yaml."""

    auth_mode = Enum(
        ["password", "header", "jupyterhub"],
        default_value="password",
        config=True,
        help="password: our sign-in form; header: trust a user header from the SSO proxy; "
        "jupyterhub: sign in through JupyterHub's OAuth (run as a Hub service)",
    )
    password_file = Unicode("", config=True, help="JSON file of user id -> scrypt hash (password mode)")
    trusted_proxies = List(
        Unicode(),
        default_value=[],
        config=True,
        help="addresses or CIDR networks whose user header is believed (header mode)",
    )
    user_header = Unicode("X-Remote-User", config=True, help="the SSO proxy's user header (header mode)")
    cim_home = Unicode("", config=True, help="the CIM installation folder (for access.yaml)")
    token_ttl = Float(DEFAULT_TTL, config=True, help="seconds an app identity token stays valid")

    def __init__(self, **kwargs: Any) -> None:
        kwargs["login_handler_class"] = CimLoginHandler
        kwargs["logout_handler_class"] = CimLogoutHandler
        super().__init__(**kwargs)
        self._known: dict[str, tuple[float, str | None]] = {}

    # -- who may sign in ------------------------------------------------------------------------------
    @property
    def auth_enabled(self) -> bool:
        """Authentication is always on: there is no anonymous access."""
        return True

    @property
    def login_available(self) -> bool:
        """A login route exists in both modes (in header mode it explains and refuses)."""
        return True

    def _secret(self) -> str:
        secret = os.environ.get(SECRET_ENV, "")
        if not secret:
            raise RuntimeError(f"{SECRET_ENV} is not set; start the server with `cim serve`")
        return secret

    def display_name_of(self, user_id: str) -> str | None:
        """Return the display name of a user of access.yaml, or ``None`` when unknown (cached 30 s)."""
        now = time.monotonic()
        hit = self._known.get(user_id)
        if hit is not None and now - hit[0] < _KNOWN_USER_TTL:
            return hit[1]
        from cimlib.access import UnknownUser, principal_for

        home = self.cim_home or None
        try:
            name: str | None = principal_for(user_id, home=home).display_name
        except UnknownUser:
            name = None
        self._known[user_id] = (now, name)
        return name

    def _user(self, user_id: str) -> User | None:
        name = self.display_name_of(user_id)
        if name is None:
            return None
        return User(username=user_id, name=name, display_name=name)

    # -- the two modes -------------------------------------------------------------------------------
    def _user_from_header(self, handler: web.RequestHandler) -> User | None:
        raw = handler.request.headers.get(self.user_header)
        if not raw:
            return None
        peer = _peer_ip(handler)
        if not _ip_allowed(peer, list(self.trusted_proxies)):
            log.warning("ignoring %s header from untrusted address %s", self.user_header, peer)
            return None
        user = self._user(normalize_remote_user(raw))
        if user is None:
            log.warning("SSO user %r is not in access.yaml", raw)
        return user

    _hub_auth: Any = None

    @property
    def hub_auth(self) -> Any:
        """JupyterHub's ``HubOAuth`` client (jupyterhub mode), configured from the ``JUPYTERHUB_*`` variables
        that the Hub sets for the services it runs."""
        if self._hub_auth is None:
            try:
                from jupyterhub.services.auth import HubOAuth
            except ImportError as exc:  # pragma: no cover - depends on the optional extra
                raise RuntimeError(
                    "--auth jupyterhub needs the jupyterhub package (pip install cimlib[hub])"
                ) from exc
            self._hub_auth = HubOAuth.instance()
        return self._hub_auth

    @hub_auth.setter
    def hub_auth(self, value: Any) -> None:
        self._hub_auth = value

    async def _user_from_hub(self, handler: web.RequestHandler) -> User | None:
        hub = self.hub_auth
        model = await hub.get_user(handler, sync=False)
        if not model:
            return None
        if model.get("kind", "user") != "user":
            log.warning("refusing Hub %s %r: only users use the apps", model.get("kind"), model.get("name"))
            return None
        scopes = getattr(hub, "access_scopes", None)
        if scopes and not hub.check_scopes(scopes, model):
            log.warning("Hub user %r lacks the scopes to use this service", model.get("name"))
            return None
        user = self._user(normalize_remote_user(str(model.get("name", ""))))
        if user is None:
            log.warning("Hub user %r is not in access.yaml", model.get("name"))
        return user

    def get_handlers(self) -> list[tuple[str, object]]:
        """The sign-in routes, under the server's base URL (Voila registers them without it).

        In jupyterhub mode also the OAuth callback (``JUPYTERHUB_OAUTH_CALLBACK_URL``).
        """
        base = getattr(self.parent, "server_url", None) or getattr(self.parent, "base_url", "/") or "/"
        routes: list[tuple[str, object]] = [
            (url_path_join(base, path), handler) for path, handler in super().get_handlers()
        ]
        if self.auth_mode == "jupyterhub":
            from urllib.parse import urlparse

            from jupyterhub.services.auth import HubOAuthCallbackHandler

            routes.append((urlparse(self.hub_auth.oauth_redirect_uri).path, HubOAuthCallbackHandler))
        return routes

    async def get_user(self, handler: web.RequestHandler) -> User | None:  # type: ignore[override]
        """Authenticate a request, and stamp it with a server-signed identity token for the app kernel.

        Parameters
        ----------
        handler : tornado.web.RequestHandler
            The request's handler.

        Returns
        -------
        User or None
            The signed-in user, or ``None`` (the request is then refused or sent to the login page).
        """
        headers = handler.request.headers
        # Whatever the client sent under our token header is never passed on.
        while TOKEN_HEADER in headers:
            del headers[TOKEN_HEADER]
        if self.auth_mode == "header":
            user = self._user_from_header(handler)
        elif self.auth_mode == "jupyterhub":
            user = await self._user_from_hub(handler)
        else:
            user = await self._get_user(handler)
            if user is not None and self.display_name_of(user.username) is None:
                self.clear_login_cookie(handler)
                user = None
        if user is not None:
            headers[TOKEN_HEADER] = sign_identity(user.username, self._secret(), ttl=self.token_ttl)
        return user

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        """Check the sign-in form's user id and password.

        Parameters
        ----------
        handler : tornado.web.RequestHandler
            The login POST.

        Returns
        -------
        User or None
            The user on success, ``None`` otherwise (the same answer for an unknown user and a wrong
            password).
        """
        if self.auth_mode != "password":
            return None
        user_id = handler.get_argument("username", default="").strip()
        password = handler.get_argument("password", default="")
        stored = load_passwords(Path(self.password_file)).get(user_id) if self.password_file else None
        ok = check_password(stored or _DUMMY_HASH, password) and stored is not None
        user = self._user(user_id) if ok else None
        if user is None:
            log.warning("failed sign-in for %r from %s", user_id, _peer_ip(handler))
        else:
            log.info("signed in %s", user_id)
        return user


def _both(key: str) -> str:
    """A message in Chinese and English, escaped: the sign-in page comes before any language choice."""
    from cimlib.i18n import t

    return html.escape(f"{t(key, 'zh_CN')} / {t(key, 'en')}")


_LOGIN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>CIM Workbench · {title}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; background: #f4f6f8; }}
form {{ max-width: 340px; margin: 12vh auto; padding: 24px; background: #fff; border-radius: 6px;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
label {{ display: block; margin-top: 12px; font-size: 14px; }}
input {{ width: 100%; box-sizing: border-box; padding: 6px; margin-top: 4px; }}
button {{ margin-top: 18px; width: 100%; padding: 8px; }}
.error {{ color: #b00020; margin-top: 12px; }}
</style></head>
<body><form method="post" action="{action}" id="login-form">
<h3>CIM Workbench · {title}</h3>
{xsrf}
<input type="hidden" name="next" value="{next}">
<label for="username">{user}</label>
<input id="username" name="username" autocomplete="username" autofocus>
<label for="password">{password}</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit" id="login-submit">{submit}</button>
{message}
</form></body></html>
"""

_SSO_ONLY = """<!doctype html><html><head><meta charset="utf-8"><title>CIM Workbench</title></head>
<body><p id="sso-only">{text}</p></body></html>
"""


class CimLoginHandler(LoginFormHandler):
    """The sign-in form (password mode); in header mode it refuses with 403; in jupyterhub mode it sends
    the browser to the Hub's OAuth authorization (with state and PKCE, as ``HubOAuthenticated`` does)."""

    def _sso_only(self) -> bool:
        return getattr(self.identity_provider, "auth_mode", "password") == "header"

    @allow_unauthenticated
    async def get(self) -> None:
        """Show the form, or (jupyterhub mode) redirect to the Hub's sign-in."""
        provider = self.identity_provider
        if getattr(provider, "auth_mode", "password") != "jupyterhub" or self.current_user:
            super().get()
            return
        hub = provider.hub_auth
        if await hub.get_user(self, sync=False):
            # Signed in at the Hub, but not a user of access.yaml (or not granted this service): say so
            # rather than sending the browser round the OAuth loop again.
            self.set_status(403)
            self.finish(_SSO_ONLY.format(text=_both("login.not_allowed")))
            return
        params: dict[str, str] = {}
        code_verifier = None
        if getattr(hub, "pkce_enabled", False):
            code_verifier, challenge, method = hub.generate_pkce_code_challenge()
            params.update(code_challenge=challenge, code_challenge_method=method)
        next_url = self.get_argument("next", default=self.base_url)
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = self.base_url
        params["state"] = hub.set_state_cookie(self, next_url=next_url, code_verifier=code_verifier)
        self.redirect(url_concat(hub.login_url, params))

    def _render(self, message: dict[str, str] | None = None) -> None:
        if self._sso_only():
            self.set_status(403)
            self.finish(_SSO_ONLY.format(text=_both("login.sso_only")))
            return
        text = ""
        if message and message.get("error"):
            text = f'<p class="error" id="login-error">{_both("login.error")}</p>'
        self.write(
            _LOGIN_PAGE.format(
                title=_both("login.title"),
                user=_both("login.user"),
                password=_both("login.password"),
                submit=_both("login.submit"),
                action=html.escape(self.request.path, quote=True),
                xsrf=self.xsrf_form_html(),
                next=html.escape(self.get_argument("next", default=self.base_url), quote=True),
                message=text,
            )
        )


class CimLogoutHandler(JupyterHandler):
    """Sign out: clear the cookie and go back to the sign-in form."""

    @allow_unauthenticated
    def get(self) -> None:
        """Clear the login cookie and redirect to ``/login``."""
        self.identity_provider.clear_login_cookie(self)
        self.redirect(self.base_url + "login")

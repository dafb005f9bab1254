"""Role-based authorization: which roles may call which RPC and run which action.

:class:`AccessPolicy` is given to the server as ``FlightServerOptions(authorizer=...)``;
the server calls it after authentication, before the handler runs, as
``policy(principal, method, action_type)``. :func:`require_roles` checks roles
inside a handler, or guards a whole handler method as a decorator.

A rule names the roles of which the caller needs **any one**. A refusal raises
:class:`~flight_secure.errors.FlightUnauthorizedError` (PERMISSION_DENIED) saying
which roles were needed; it never lists the roles the caller has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from flight_secure.auth.base import Principal
from flight_secure.context import ServerCallContext
from flight_secure.errors import FlightUnauthorizedError
from flight_secure.rpcs import RPCS
from flight_secure.types import FlightMethod

__all__ = ["RPC_NAMES", "AccessPolicy", "RoleRequirement", "require_roles"]

_M = FlightMethod

#: The RPC names rules are written with, and the methods they stand for.
RPC_NAMES: Mapping[str, FlightMethod] = {rpc.name: rpc.method for rpc in RPCS}
_NAME_OF = {method: name for name, method in RPC_NAMES.items()}

ANY = "*"


def _role_set(roles: Iterable[str] | None) -> frozenset[str] | None:
    """Normalise a rule: None or no roles means "no role needed" (None)."""
    if roles is None:
        return None
    if isinstance(roles, str):
        roles = (roles,)
    found = frozenset(roles)
    return found or None


def _denial(what: str, required: frozenset[str]) -> FlightUnauthorizedError:
    names = sorted(required)
    needed = f"role {names[0]}" if len(names) == 1 else f"one of the roles {', '.join(names)}"
    return FlightUnauthorizedError(f"permission denied: {what} requires {needed}")


def _has_any(principal: Principal | None, required: frozenset[str]) -> bool:
    return principal is not None and not principal.roles.isdisjoint(required)


class AccessPolicy:
    """Required roles per RPC and per action type.

    ``rules`` maps RPC names (``"DoPut"``, ``"DoGet"``, ... see :data:`RPC_NAMES`)
    to roles; ``"*"`` in ``rules``, or ``default``, is the rule for every RPC
    without its own (give one or the other, not both). ``actions`` maps action
    types to roles for DoAction; ``"*"`` in ``actions`` covers the other action
    types, and an action with no rule at all falls back to the DoAction rule.
    An RPC with no rule, or a rule with no roles, is open to every caller the
    server admitted. Unknown RPC names raise ValueError (catching typos).
    """

    def __init__(self, rules: Mapping[str, Iterable[str]] | None = None,
                 default: Iterable[str] | None = None,
                 actions: Mapping[str, Iterable[str]] | None = None) -> None:
        rules = dict(rules or {})
        unknown = sorted(set(rules) - set(RPC_NAMES) - {ANY})
        if unknown:
            raise ValueError(f"unknown RPC names in rules: {unknown}; "
                             f"use {sorted(RPC_NAMES)} or '*'")
        if ANY in rules and default is not None:
            raise ValueError("give the default rule as rules['*'] or as default=, not both")
        fallback = _role_set(rules.pop(ANY, default))
        self._rpc: dict[FlightMethod, frozenset[str] | None] = {
            method: _role_set(rules[name]) if name in rules else fallback
            for name, method in RPC_NAMES.items()
        }
        actions = dict(actions or {})
        self._action_default = _role_set(actions.pop(ANY)) if ANY in actions \
            else self._rpc[_M.DO_ACTION]
        self._actions = {kind: _role_set(roles) for kind, roles in actions.items()}

    def required_roles(self, method: FlightMethod,
                       action_type: str | None = None) -> frozenset[str] | None:
        """The roles of which a caller needs one for this call; None when none is needed."""
        if method is _M.DO_ACTION and action_type is not None:
            return self._actions.get(action_type, self._action_default)
        return self._rpc.get(method)

    def __call__(self, principal: Principal | None, method: FlightMethod,
                 action_type: str | None = None) -> None:
        """Allow the call (return) or raise FlightUnauthorizedError (PERMISSION_DENIED)."""
        required = self.required_roles(method, action_type)
        if required is None or _has_any(principal, required):
            return
        if method is _M.DO_ACTION and action_type is not None:
            raise _denial(f"action {action_type!r}", required)
        raise _denial(_NAME_OF.get(method, method.name), required)

    def __repr__(self) -> str:
        rules = {_NAME_OF[m]: sorted(r) for m, r in self._rpc.items() if r}
        return f"AccessPolicy(rules={rules}, actions={sorted(self._actions)})"


F = TypeVar("F", bound=Callable[..., Any])


class RoleRequirement:
    """Needs any one of ``roles``: call :meth:`check`, or decorate a handler method."""

    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    def check(self, subject: Any) -> None:
        """Raise FlightUnauthorizedError unless the caller has one of the roles.

        ``subject`` is a handler's ServerCallContext, of flight_secure's engine or
        of pyarrow's (see :func:`flight_secure.arrow.principal`; the refusal is then
        pyarrow's FlightUnauthorizedError), a Principal, or None (no authenticated
        caller: always refused).
        """
        if subject is None or isinstance(subject, Principal | ServerCallContext):
            principal = subject.principal if isinstance(subject, ServerCallContext) else subject
            if not _has_any(principal, self.roles):
                raise _denial("this call", self.roles)
            return
        from flight_secure import arrow  # a handler on pyarrow's engine

        if not _has_any(arrow.principal(subject), self.roles):
            raise arrow.to_pyarrow(_denial("this call", self.roles))

    def __call__(self, handler: F) -> F:
        """Decorate a FlightServerBase method ``handler(self, context, ...)``."""

        @functools.wraps(handler)
        def guarded(server: Any, context: Any, *args: Any, **kwargs: Any) -> Any:
            self.check(context)
            return handler(server, context, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"require_roles({', '.join(map(repr, sorted(self.roles)))})"


def require_roles(*roles: str) -> RoleRequirement:
    """A requirement for any one of ``roles``.

    Inside a handler: ``require_roles("admin").check(context)``. On a handler
    method: ``@require_roles("writer")`` above ``def do_put(self, context, ...)``.
    """
    if not roles:
        raise ValueError("require_roles needs at least one role")
    return RoleRequirement(frozenset(roles))

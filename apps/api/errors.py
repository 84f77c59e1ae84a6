"""Errors in OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}`` with the matching status."""

from __future__ import annotations

from django.http import JsonResponse
from pydantic import ValidationError

from apps.api.schemas import ErrorBody, ErrorDetail

# OpenAI's error types by status; 502 is ours (every model behind the request failed).
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    402: "insufficient_quota",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
}


class ApiError(Exception):
    """A request the API refuses or could not serve, rendered as an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        failure_reason: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.failure_reason = failure_reason
        self.retry_after = retry_after

    def body(self) -> ErrorBody:
        return ErrorBody(
            error=ErrorDetail(
                message=self.message,
                type=_TYPES.get(self.status, "server_error"),
                code=self.code,
                param=self.param,
                failure_reason=self.failure_reason,
            )
        )

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body().model_dump(exclude_none=False), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response


# A defect of ours: the caller still gets an OpenAI-shaped error, the log gets the traceback.
UNEXPECTED = ApiError(500, "The server failed unexpectedly; the error is logged.", code="unexpected_error")


def validation_error(error: ValidationError) -> ApiError:
    """A 400 naming the first problem (and its field as ``param``), the way OpenAI reports bad bodies."""
    problems = error.errors(include_url=False)
    first = problems[0] if problems else {"loc": (), "msg": str(error)}
    param = ".".join(str(part) for part in first.get("loc", ()))
    message = f"{param}: {first['msg']}" if param else str(first["msg"])
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return ApiError(400, message, code="invalid_request", param=param or None)

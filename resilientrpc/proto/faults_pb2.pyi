from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FaultConfig(_message.Message):
    __slots__ = ("latency_seconds", "latency_jitter_seconds", "error_rate", "error_code", "hang", "health_status", "send_load_report", "cpu_utilization", "application_utilization", "rps_fractional", "eps", "mem_utilization", "fail_next", "pushback_ms", "retry_info_seconds", "stall_rate", "stall_seconds", "fail_after_messages")
    LATENCY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_JITTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    HANG_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    SEND_LOAD_REPORT_FIELD_NUMBER: _ClassVar[int]
    CPU_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    RPS_FRACTIONAL_FIELD_NUMBER: _ClassVar[int]
    EPS_FIELD_NUMBER: _ClassVar[int]
    MEM_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    FAIL_NEXT_FIELD_NUMBER: _ClassVar[int]
    PUSHBACK_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_INFO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STALL_RATE_FIELD_NUMBER: _ClassVar[int]
    STALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAIL_AFTER_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    latency_seconds: float
    latency_jitter_seconds: float
    error_rate: float
    error_code: int
    hang: bool
    health_status: str
    send_load_report: bool
    cpu_utilization: float
    application_utilization: float
    rps_fractional: float
    eps: float
    mem_utilization: float
    fail_next: int
    pushback_ms: str
    retry_info_seconds: float
    stall_rate: float
    stall_seconds: float
    fail_after_messages: int
    def __init__(self, latency_seconds: _Optional[float] = ..., latency_jitter_seconds: _Optional[float] = ..., error_rate: _Optional[float] = ..., error_code: _Optional[int] = ..., hang: bool = ..., health_status: _Optional[str] = ..., send_load_report: bool = ..., cpu_utilization: _Optional[float] = ..., application_utilization: _Optional[float] = ..., rps_fractional: _Optional[float] = ..., eps: _Optional[float] = ..., mem_utilization: _Optional[float] = ..., fail_next: _Optional[int] = ..., pushback_ms: _Optional[str] = ..., retry_info_seconds: _Optional[float] = ..., stall_rate: _Optional[float] = ..., stall_seconds: _Optional[float] = ..., fail_after_messages: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("calls", "previous_rpc_attempts")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RPC_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    calls: int
    previous_rpc_attempts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, calls: _Optional[int] = ..., previous_rpc_attempts: _Optional[_Iterable[int]] = ...) -> None: ...

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FaultConfig(_message.Message):
    __slots__ = ("latency_seconds", "latency_jitter_seconds", "error_rate", "error_code", "hang", "health_status", "send_load_report", "cpu_utilization", "application_utilization", "rps_fractional", "eps", "mem_utilization")
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
    def __init__(self, latency_seconds: _Optional[float] = ..., latency_jitter_seconds: _Optional[float] = ..., error_rate: _Optional[float] = ..., error_code: _Optional[int] = ..., hang: bool = ..., health_status: _Optional[str] = ..., send_load_report: bool = ..., cpu_utilization: _Optional[float] = ..., application_utilization: _Optional[float] = ..., rps_fractional: _Optional[float] = ..., eps: _Optional[float] = ..., mem_utilization: _Optional[float] = ...) -> None: ...

from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CollectionRequest(_message.Message):
    __slots__ = ("query", "body")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    query: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, query: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ResourceRequest(_message.Message):
    __slots__ = ("id", "query", "body")
    ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    id: str
    query: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, id: _Optional[str] = ..., query: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ChildCollectionRequest(_message.Message):
    __slots__ = ("parent_id", "query", "body")
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    parent_id: str
    query: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, parent_id: _Optional[str] = ..., query: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ChildResourceRequest(_message.Message):
    __slots__ = ("parent_id", "id", "query", "body")
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    parent_id: str
    id: str
    query: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, parent_id: _Optional[str] = ..., id: _Optional[str] = ..., query: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

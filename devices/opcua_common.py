"""What the OPC UA board simulator and the board driver share: the model's type names mapped to
asyncua's, the security policies, the service sets of the roles, and the site trust store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from asyncua import ua
from asyncua.crypto import security_policies
from asyncua.crypto.truststore import TrustStore
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes, code_to_name_doc

from controllers.errors import ConfigurationError

#: OPC UA DateTime's null value (1601-01-01): "none" in the model (no expiry, no activation time).
MIN_DATETIME = datetime(1601, 1, 1, tzinfo=UTC)

VARIANT_TYPES: dict[str, ua.VariantType] = {
    "String": ua.VariantType.String, "String[]": ua.VariantType.String, "Byte": ua.VariantType.Byte,
    "UInt16": ua.VariantType.UInt16, "UInt32": ua.VariantType.UInt32, "Double": ua.VariantType.Double,
    "DateTime": ua.VariantType.DateTime, "Boolean": ua.VariantType.Boolean,
}

SERVER_POLICIES: dict[str, ua.SecurityPolicyType] = {
    "Basic256Sha256": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes256Sha256RsaPss": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}

CLIENT_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}

_O = ObjectIds
#: The OPC UA requests each service set of the model's roles covers.
SERVICE_REQUESTS: dict[str, tuple[int, ...]] = {
    "session": (_O.CreateSessionRequest_Encoding_DefaultBinary, _O.ActivateSessionRequest_Encoding_DefaultBinary,
                _O.CloseSessionRequest_Encoding_DefaultBinary, _O.CloseSecureChannelRequest_Encoding_DefaultBinary,
                _O.GetEndpointsRequest_Encoding_DefaultBinary, _O.FindServersRequest_Encoding_DefaultBinary),
    "browse": (_O.BrowseRequest_Encoding_DefaultBinary, _O.BrowseNextRequest_Encoding_DefaultBinary,
               _O.TranslateBrowsePathsToNodeIdsRequest_Encoding_DefaultBinary, _O.RegisterNodesRequest_Encoding_DefaultBinary,
               _O.UnregisterNodesRequest_Encoding_DefaultBinary),
    "read": (_O.ReadRequest_Encoding_DefaultBinary, _O.HistoryReadRequest_Encoding_DefaultBinary),
    "subscribe": (_O.CreateSubscriptionRequest_Encoding_DefaultBinary, _O.ModifySubscriptionRequest_Encoding_DefaultBinary,
                  _O.DeleteSubscriptionsRequest_Encoding_DefaultBinary, _O.TransferSubscriptionsRequest_Encoding_DefaultBinary,
                  _O.CreateMonitoredItemsRequest_Encoding_DefaultBinary, _O.ModifyMonitoredItemsRequest_Encoding_DefaultBinary,
                  _O.DeleteMonitoredItemsRequest_Encoding_DefaultBinary, _O.SetMonitoringModeRequest_Encoding_DefaultBinary,
                  _O.SetPublishingModeRequest_Encoding_DefaultBinary, _O.SetTriggeringRequest_Encoding_DefaultBinary,
                  _O.PublishRequest_Encoding_DefaultBinary, _O.RepublishRequest_Encoding_DefaultBinary),
    "call": (_O.CallRequest_Encoding_DefaultBinary,),
    "write": (_O.WriteRequest_Encoding_DefaultBinary,),
}


def node_id(identifier: str, namespace_index: int) -> ua.NodeId:
    """A string NodeId in namespace ``namespace_index``."""
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace_index))


def numeric_node_id(identifier: int) -> ua.NodeId:
    """A numeric NodeId of namespace 0 (a standard type or request)."""
    return ua.NodeId(ua.Int32(identifier))


def make_status(code: int) -> ua.StatusCode:
    """A StatusCode of value ``code``."""
    return ua.StatusCode(ua.UInt32(code))


def data_value(value: Any, vtype: ua.VariantType, source_time: datetime) -> ua.DataValue:
    """A DataValue of ``value`` typed ``vtype`` with its source timestamp."""
    return ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=cast(ua.DateTime, source_time))


def status_code(name: str) -> int:
    """The value of the OPC UA status code ``name`` (e.g. ``BadOutOfRange``); ConfigurationError when unknown."""
    value = getattr(StatusCodes, name, None)
    if not isinstance(value, int):
        raise ConfigurationError(f"{name!r} is not an OPC UA status code")
    return value


def status_name(code: int) -> str:
    """The name of an OPC UA status code value (``BadUserAccessDenied``), or its hex value when unknown."""
    return make_status(code).name if code in code_to_name_doc else f"0x{code:08X}"


async def site_trust_store(trust_dir: Path) -> TrustStore:
    """A loaded asyncua TrustStore trusting the certificates (the site CA) in ``trust_dir``."""
    if not trust_dir.is_dir():
        raise ConfigurationError(f"trust directory {trust_dir} does not exist (run `lalin pki init`)")
    store = TrustStore([trust_dir], [])
    await store.load()
    return store

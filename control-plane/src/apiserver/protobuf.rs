//! Request bodies in Kubernetes' protobuf encoding, for the objects kubectl's generators send.
//!
//! `kubectl create configmap|secret|namespace|serviceaccount|service|deployment` build the object
//! with client-go's typed clients, which send `application/vnd.kubernetes.protobuf` and do not
//! retry as JSON on a 415. This module turns such a body into the JSON object the rest of the
//! API server works with.
//!
//! The body is the 4-byte magic `k8s\0` and a `runtime.Unknown` message (type meta, the object's
//! own bytes, content encoding and type). The object is decoded against the schema tables
//! below, which name each field by its number in Kubernetes' `generated.proto` and give its JSON
//! name and shape. Go's protobuf encoder writes every non-pointer field, set or not; a field
//! whose value is the zero value says nothing and is dropped (as JSON's `omitempty` would), so
//! a table only needs the fields a client may actually set. A set field the tables do not know
//! is refused (naming its message and number), never dropped: the client is told to send JSON.

use serde_json::{Map, Value};

use crate::pki::base64_encode;

/// The content type this module decodes.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";
/// Go's zero `time.Time` as protobuf seconds: an unset timestamp.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;
/// Messages nest at most this deep (Deployment → template → spec → container → … is about 8).
const MAX_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic bytes")]
    NoMagic,
    #[error("malformed protobuf body: {0}")]
    Malformed(&'static str),
    #[error("protobuf bodies with content encoding {0:?} are not supported")]
    Encoding(String),
    #[error("the protobuf body holds a {given}, not a {expected}")]
    WrongKind { given: String, expected: String },
    #[error("this server does not decode {0} from protobuf; send it as JSON")]
    UnsupportedKind(String),
    #[error(
        "field {number} of {message} is set but not supported in protobuf bodies by this server; send the object as JSON"
    )]
    UnsupportedField { message: &'static str, number: u32 },
}

/// Decodes a protobuf request body holding a `kind` object into its JSON form.
pub fn decode(kind: &str, body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    // runtime.Unknown: typeMeta = 1, raw = 2, contentEncoding = 3, contentType = 4.
    let (mut type_meta, mut raw) = (Map::new(), &[][..]);
    let mut reader = Reader { rest: envelope };
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Bytes(bytes)) => type_meta = decode_message(&TYPE_META, bytes, 0)?,
            (2, Wire::Bytes(bytes)) => raw = bytes,
            (3, Wire::Bytes(encoding)) if !encoding.is_empty() => {
                return Err(ProtobufError::Encoding(String::from_utf8_lossy(encoding).into_owned()));
            }
            (3 | 4, Wire::Bytes(_)) => {}
            _ => return Err(ProtobufError::Malformed("unexpected field in the runtime.Unknown envelope")),
        }
    }
    let given_kind = type_meta.get("kind").and_then(Value::as_str).unwrap_or(kind);
    if given_kind != kind {
        return Err(ProtobufError::WrongKind { given: given_kind.to_owned(), expected: kind.to_owned() });
    }
    let schema = schema_for(kind).ok_or_else(|| ProtobufError::UnsupportedKind(kind.to_owned()))?;
    let mut object = decode_message(schema, raw, 0)?;
    if let Some(api_version) = type_meta.get("apiVersion") {
        object.insert("apiVersion".into(), api_version.clone());
    }
    object.insert("kind".into(), Value::String(kind.to_owned()));
    Ok(Value::Object(object))
}

fn schema_for(kind: &str) -> Option<&'static Message> {
    Some(match kind {
        "ConfigMap" => &CONFIG_MAP,
        "Secret" => &SECRET,
        "Namespace" => &NAMESPACE,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "Service" => &SERVICE,
        "Deployment" => &DEPLOYMENT,
        _ => return None,
    })
}

/// A message's fields by number.
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

struct Field {
    number: u32,
    json: &'static str,
    shape: Shape,
    repeated: bool,
}

#[derive(Clone, Copy)]
enum Shape {
    Str,
    Int,
    Bool,
    /// A pointer field in Go: present means set, even when zero.
    OptInt,
    OptBool,
    Msg(&'static Message),
    StrMap,
    BytesMap,
    /// `map<string, resource.Quantity>`.
    QuantityMap,
    Time,
    IntOrString,
}

const fn field(number: u32, json: &'static str, shape: Shape) -> Field {
    Field { number, json, shape, repeated: false }
}

const fn list(number: u32, json: &'static str, shape: Shape) -> Field {
    Field { number, json, shape, repeated: true }
}

use Shape::*;

static TYPE_META: Message = Message { name: "TypeMeta", fields: &[field(1, "apiVersion", Str), field(2, "kind", Str)] };

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        field(1, "name", Str),
        field(2, "generateName", Str),
        field(3, "namespace", Str),
        field(5, "uid", Str),
        field(6, "resourceVersion", Str),
        field(8, "creationTimestamp", Time),
        field(11, "labels", StrMap),
        field(12, "annotations", StrMap),
        list(13, "ownerReferences", Msg(&OWNER_REFERENCE)),
        list(14, "finalizers", Str),
    ],
};
static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        field(1, "kind", Str),
        field(3, "name", Str),
        field(4, "uid", Str),
        field(5, "apiVersion", Str),
        field(6, "controller", OptBool),
        field(7, "blockOwnerDeletion", OptBool),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        field(2, "data", StrMap),
        field(3, "binaryData", BytesMap),
        field(4, "immutable", OptBool),
    ],
};
static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        field(2, "data", BytesMap),
        field(3, "type", Str),
        field(4, "stringData", StrMap),
        field(5, "immutable", OptBool),
    ],
};
static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        field(2, "spec", Msg(&NAMESPACE_SPEC)),
        field(3, "status", Msg(&NAMESPACE_STATUS)),
    ],
};
static NAMESPACE_SPEC: Message = Message { name: "NamespaceSpec", fields: &[list(1, "finalizers", Str)] };
static NAMESPACE_STATUS: Message = Message { name: "NamespaceStatus", fields: &[field(1, "phase", Str)] };
static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        list(3, "imagePullSecrets", Msg(&LOCAL_OBJECT_REFERENCE)),
        field(4, "automountServiceAccountToken", OptBool),
    ],
};
static LOCAL_OBJECT_REFERENCE: Message = Message { name: "LocalObjectReference", fields: &[field(1, "name", Str)] };

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        field(2, "spec", Msg(&SERVICE_SPEC)),
        field(3, "status", Msg(&SERVICE_STATUS)),
    ],
};
static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        list(1, "ports", Msg(&SERVICE_PORT)),
        field(2, "selector", StrMap),
        field(3, "clusterIP", Str),
        field(4, "type", Str),
        list(5, "externalIPs", Str),
        field(7, "sessionAffinity", Str),
        field(10, "externalName", Str),
    ],
};
static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        field(1, "name", Str),
        field(2, "protocol", Str),
        field(3, "port", Int),
        field(4, "targetPort", IntOrString),
        field(5, "nodePort", Int),
    ],
};
static SERVICE_STATUS: Message = Message { name: "ServiceStatus", fields: &[field(1, "loadBalancer", Msg(&EMPTY))] };
/// A message whose fields are all unsupported: it decodes only when empty.
static EMPTY: Message = Message { name: "status field", fields: &[] };

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        field(1, "metadata", Msg(&OBJECT_META)),
        field(2, "spec", Msg(&DEPLOYMENT_SPEC)),
        field(3, "status", Msg(&EMPTY)),
    ],
};
static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        field(1, "replicas", OptInt),
        field(2, "selector", Msg(&LABEL_SELECTOR)),
        field(3, "template", Msg(&POD_TEMPLATE_SPEC)),
        field(4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        field(5, "minReadySeconds", Int),
        field(6, "revisionHistoryLimit", OptInt),
        field(7, "paused", Bool),
        field(9, "progressDeadlineSeconds", OptInt),
    ],
};
static LABEL_SELECTOR: Message = Message { name: "LabelSelector", fields: &[field(1, "matchLabels", StrMap)] };
static DEPLOYMENT_STRATEGY: Message = Message { name: "DeploymentStrategy", fields: &[field(1, "type", Str)] };
static POD_TEMPLATE_SPEC: Message = Message {
    name: "PodTemplateSpec",
    fields: &[field(1, "metadata", Msg(&OBJECT_META)), field(2, "spec", Msg(&POD_SPEC))],
};
static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        list(2, "containers", Msg(&CONTAINER)),
        field(3, "restartPolicy", Str),
        field(4, "terminationGracePeriodSeconds", OptInt),
        field(6, "dnsPolicy", Str),
        field(7, "nodeSelector", StrMap),
        field(8, "serviceAccountName", Str),
        field(10, "nodeName", Str),
        field(11, "hostNetwork", Bool),
    ],
};
static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        field(1, "name", Str),
        field(2, "image", Str),
        list(3, "command", Str),
        list(4, "args", Str),
        field(5, "workingDir", Str),
        list(6, "ports", Msg(&CONTAINER_PORT)),
        list(7, "env", Msg(&ENV_VAR)),
        field(8, "resources", Msg(&RESOURCE_REQUIREMENTS)),
        field(13, "terminationMessagePath", Str),
        field(14, "imagePullPolicy", Str),
        field(20, "terminationMessagePolicy", Str),
    ],
};
static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        field(1, "name", Str),
        field(2, "hostPort", Int),
        field(3, "containerPort", Int),
        field(4, "protocol", Str),
    ],
};
static ENV_VAR: Message = Message { name: "EnvVar", fields: &[field(1, "name", Str), field(2, "value", Str)] };
static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[field(1, "limits", QuantityMap), field(2, "requests", QuantityMap)],
};

/// One field as it is on the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32- or 64-bit values: no field the tables know uses them.
    Fixed,
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or(ProtobufError::Malformed("truncated varint"))?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ProtobufError> {
        if self.rest.len() < len {
            return Err(ProtobufError::Malformed("field runs past the end of its message"));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| ProtobufError::Malformed("field number out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Wire::Fixed
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed("length out of range"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed
            }
            _ => return Err(ProtobufError::Malformed("unknown wire type")),
        };
        Ok(Some((number, wire)))
    }
}

fn decode_message(message: &'static Message, bytes: &[u8], depth: usize) -> Result<Map<String, Value>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::Malformed("messages nested too deep"));
    }
    let mut out = Map::new();
    let mut reader = Reader { rest: bytes };
    while let Some((number, wire)) = reader.next()? {
        let Some(field) = message.fields.iter().find(|f| f.number == number) else {
            if is_zero(&wire, depth) {
                continue;
            }
            return Err(ProtobufError::UnsupportedField { message: message.name, number });
        };
        if field.repeated {
            // A list keeps every element, zero values too.
            let value = decode_value(field.shape, wire, depth, true)?;
            match out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.extend(value),
                _ => return Err(ProtobufError::Malformed("repeated field mixed with a single one")),
            }
            continue;
        }
        if let (StrMap | BytesMap | QuantityMap, Wire::Bytes(bytes)) = (field.shape, &wire) {
            // Each map entry arrives as one occurrence of the field.
            let (key, value) = map_entry(field.shape, bytes)?;
            match out.entry(field.json).or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(map) => map.insert(key, value),
                _ => return Err(ProtobufError::Malformed("map field mixed with a single one")),
            };
            continue;
        }
        if let Some(value) = decode_value(field.shape, wire, depth, false)? {
            out.insert(field.json.to_owned(), value);
        }
    }
    Ok(out)
}

/// A field holding its type's zero value: 0 or false, empty bytes, or a message (Go writes
/// non-pointer structs even when unset) whose fields are all zero values.
fn is_zero(wire: &Wire<'_>, depth: usize) -> bool {
    match wire {
        Wire::Varint(value) => *value == 0,
        Wire::Bytes(bytes) if bytes.is_empty() => true,
        Wire::Bytes(bytes) => depth < MAX_DEPTH && all_zero(bytes, depth + 1),
        Wire::Fixed => false,
    }
}

/// Whether `bytes` parse as a message of zero values only.
fn all_zero(bytes: &[u8], depth: usize) -> bool {
    let mut reader = Reader { rest: bytes };
    loop {
        match reader.next() {
            Ok(None) => return true,
            Ok(Some((number, wire))) if number > 0 && is_zero(&wire, depth) => {}
            _ => return false,
        }
    }
}

/// One field's value; None when it is a zero value JSON would omit (unless `keep_zero`).
fn decode_value(shape: Shape, wire: Wire<'_>, depth: usize, keep_zero: bool) -> Result<Option<Value>, ProtobufError> {
    let value = match (shape, wire) {
        (Str, Wire::Bytes(bytes)) => {
            (keep_zero || !bytes.is_empty()).then(|| text(bytes)).transpose()?.map(Value::String)
        }
        // Varints carry int32 as sign-extended 64 bits, so the cast gives both back.
        (Int, Wire::Varint(value)) => (keep_zero || value != 0).then(|| Value::from(value as i64)),
        (OptInt, Wire::Varint(value)) => Some(Value::from(value as i64)),
        (Bool, Wire::Varint(value)) => (keep_zero || value != 0).then_some(Value::Bool(value != 0)),
        (OptBool, Wire::Varint(value)) => Some(Value::Bool(value != 0)),
        (Msg(message), Wire::Bytes(bytes)) => Some(Value::Object(decode_message(message, bytes, depth + 1)?)),
        (Time, Wire::Bytes(bytes)) => Some(time(bytes)?),
        (IntOrString, Wire::Bytes(bytes)) => Some(int_or_string(bytes)?),
        _ => return Err(ProtobufError::Malformed("field has the wrong wire type")),
    };
    Ok(value)
}

/// A string field's text.
fn text(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed("string is not UTF-8"))
}

/// One `map<string, …>` entry: key = 1, value = 2.
fn map_entry(shape: Shape, bytes: &[u8]) -> Result<(String, Value), ProtobufError> {
    let mut reader = Reader { rest: bytes };
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    while let Some((number, wire)) = reader.next()? {
        let Wire::Bytes(bytes) = wire else { return Err(ProtobufError::Malformed("map entry field is not bytes")) };
        match number {
            1 => key = text(bytes)?,
            2 => {
                value = match shape {
                    BytesMap => Value::String(base64_encode(bytes)),
                    QuantityMap => quantity(bytes)?,
                    _ => Value::String(text(bytes)?),
                }
            }
            _ => return Err(ProtobufError::Malformed("map entry has a field other than key and value")),
        }
    }
    Ok((key, value))
}

/// `resource.Quantity`: its string form in field 1.
fn quantity(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader { rest: bytes };
    while let Some((number, wire)) = reader.next()? {
        if let (1, Wire::Bytes(bytes)) = (number, wire) {
            return Ok(Value::String(text(bytes)?));
        }
    }
    Ok(Value::String(String::new()))
}

/// `metav1.Time` (seconds = 1, nanos = 2) as RFC 3339 in UTC; Go's zero time is unset.
fn time(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader { rest: bytes };
    let mut seconds = 0i64;
    while let Some((number, wire)) = reader.next()? {
        if let (1, Wire::Varint(value)) = (number, wire) {
            seconds = value as i64;
        }
    }
    if seconds == ZERO_TIME_SECONDS {
        return Ok(Value::Null);
    }
    let stamp =
        jiff::Timestamp::from_second(seconds).map_err(|_| ProtobufError::Malformed("timestamp out of range"))?;
    Ok(Value::String(stamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// `intstr.IntOrString`: type = 1 (0 int, 1 string), intVal = 2, strVal = 3.
fn int_or_string(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader { rest: bytes };
    let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
    while let Some((number, wire)) = reader.next()? {
        match (number, wire) {
            (1, Wire::Varint(kind)) => is_string = kind == 1,
            (2, Wire::Varint(value)) => int = value as i64,
            (3, Wire::Bytes(bytes)) => string = text(bytes)?,
            _ => return Err(ProtobufError::Malformed("unexpected IntOrString field")),
        }
    }
    Ok(if is_string { Value::String(string) } else { Value::from(int) })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A minimal protobuf writer, for building bodies the way Go's encoder lays them out.
    #[derive(Default)]
    struct Out(Vec<u8>);

    impl Out {
        fn varint(&mut self, mut value: u64) -> &mut Self {
            loop {
                let byte = (value & 0x7f) as u8;
                value >>= 7;
                if value == 0 {
                    self.0.push(byte);
                    return self;
                }
                self.0.push(byte | 0x80);
            }
        }
        fn int(&mut self, number: u32, value: i64) -> &mut Self {
            self.varint(u64::from(number) << 3).varint(value as u64)
        }
        fn bytes(&mut self, number: u32, bytes: &[u8]) -> &mut Self {
            self.varint((u64::from(number) << 3) | 2).varint(bytes.len() as u64);
            self.0.extend_from_slice(bytes);
            self
        }
        fn str(&mut self, number: u32, text: &str) -> &mut Self {
            self.bytes(number, text.as_bytes())
        }
        fn entry(&mut self, number: u32, key: &str, value: &[u8]) -> &mut Self {
            let entry = Out::default().str(1, key).bytes(2, value).0.clone();
            self.bytes(number, &entry)
        }
        fn done(&mut self) -> Vec<u8> {
            std::mem::take(&mut self.0)
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = Out::default().str(1, api_version).str(2, kind).done();
        let unknown = Out::default().bytes(1, &type_meta).bytes(2, raw).str(3, "").str(4, "").done();
        [MAGIC, &unknown].concat()
    }

    fn meta(name: &str) -> Vec<u8> {
        let zero_time = Out::default().int(1, ZERO_TIME_SECONDS).int(2, 0).done();
        // Go writes every non-pointer field: empty strings and a zero timestamp included.
        Out::default()
            .str(1, name)
            .str(2, "")
            .str(3, "")
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .bytes(8, &zero_time)
            .done()
    }

    #[test]
    fn a_config_map_as_kubectl_create_sends_it() {
        let raw = Out::default().bytes(1, &meta("settings")).entry(2, "a", b"1").entry(2, "b", b"two").done();
        let object = decode("ConfigMap", &envelope("v1", "ConfigMap", &raw)).expect("decode");
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "settings", "creationTimestamp": null}, "data": {"a": "1", "b": "two"}})
        );
    }

    #[test]
    fn secret_bytes_become_base64() {
        let raw = Out::default().bytes(1, &meta("s")).entry(2, "p", b"q\xff").str(3, "Opaque").done();
        let object = decode("Secret", &envelope("v1", "Secret", &raw)).expect("decode");
        assert_eq!(object["data"], json!({"p": base64_encode(b"q\xff")}));
        assert_eq!(object["type"], json!("Opaque"));
    }

    #[test]
    fn a_deployment_with_a_container_and_a_pointer_zero() {
        let resources = Out::default().done();
        let container = Out::default().str(1, "web").str(2, "busybox").bytes(8, &resources).done();
        let pod_spec = Out::default().bytes(2, &container).str(3, "").int(11, 0).done();
        let labels = Out::default().entry(11, "app", b"x").done();
        let template = Out::default().bytes(1, &labels).bytes(2, &pod_spec).done();
        let selector = Out::default().entry(1, "app", b"x").done();
        let spec = Out::default().int(1, 0).bytes(2, &selector).bytes(3, &template).bytes(4, &[]).done();
        let raw = Out::default().bytes(1, &meta("x")).bytes(2, &spec).bytes(3, &[]).done();
        let object = decode("Deployment", &envelope("apps/v1", "Deployment", &raw)).expect("decode");
        assert_eq!(object["spec"]["replicas"], json!(0), "a set pointer field keeps its zero");
        assert_eq!(object["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "busybox", "resources": {}}])
        );
        assert_eq!(object["spec"]["template"]["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(object["apiVersion"], json!("apps/v1"));
    }

    #[test]
    fn a_service_port_with_a_numeric_target() {
        let target = Out::default().int(1, 0).int(2, 8080).done();
        let port = Out::default().str(1, "80-8080").str(2, "TCP").int(3, 80).bytes(4, &target).int(5, 0).done();
        let spec = Out::default().bytes(1, &port).entry(2, "app", b"svc").str(4, "ClusterIP").done();
        let raw =
            Out::default().bytes(1, &meta("svc")).bytes(2, &spec).bytes(3, &Out::default().bytes(1, &[]).done()).done();
        let object = decode("Service", &envelope("v1", "Service", &raw)).expect("decode");
        assert_eq!(
            object["spec"]["ports"],
            json!([{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}])
        );
        assert_eq!(object["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn list_elements_keep_zero_values_and_unset_structs_are_skipped() {
        let unset_struct = Out::default().str(1, "").int(2, 0).bytes(3, &Out::default().int(1, 0).done()).done();
        let container = Out::default().str(1, "c").str(3, "sh").str(3, "").bytes(15, &unset_struct).done();
        let pod_spec = Out::default().bytes(2, &container).done();
        let template = Out::default().bytes(2, &pod_spec).done();
        let spec = Out::default().bytes(3, &template).done();
        let raw = Out::default().bytes(1, &meta("x")).bytes(2, &spec).done();
        let object = decode("Deployment", &envelope("apps/v1", "Deployment", &raw)).expect("decode");
        assert_eq!(object["spec"]["template"]["spec"]["containers"][0], json!({"name": "c", "command": ["sh", ""]}));
    }

    #[test]
    fn set_fields_it_does_not_know_are_refused_by_name() {
        // ObjectMeta field 17 (managedFields) with content.
        let raw = Out::default().bytes(1, &[meta("x"), Out::default().bytes(17, b"\x0a\x01m").done()].concat()).done();
        let error = decode("ConfigMap", &envelope("v1", "ConfigMap", &raw)).expect_err("refused");
        assert_eq!(error, ProtobufError::UnsupportedField { message: "ObjectMeta", number: 17 });
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert_eq!(decode("ConfigMap", b"{}"), Err(ProtobufError::NoMagic));
        let raw = Out::default().bytes(1, &meta("x")).done();
        assert!(matches!(decode("Secret", &envelope("v1", "ConfigMap", &raw)), Err(ProtobufError::WrongKind { .. })));
        assert!(matches!(decode("Pod", &envelope("v1", "Pod", &raw)), Err(ProtobufError::UnsupportedKind(_))));
        let body = envelope("v1", "ConfigMap", &raw);
        for cut in 0..body.len() {
            let _ = decode("ConfigMap", &body[..cut]);
        }
        assert!(decode("ConfigMap", &[MAGIC, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]].concat()).is_err());
    }
}

//! The protobuf messages of the session services, written with prost derive.
//!
//! Field numbers follow fsutil's `types/wire.proto` and `types/stat.proto`, gRPC's
//! `grpc.health.v1`, and BuildKit's `moby.filesync.v1` file-send and auth services. Maps are
//! `BTreeMap`s so that an encoded message is the same bytes every time.

use std::collections::BTreeMap;

/// One message of fsutil's file-transfer protocol (`fsutil.types.Packet`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Packet {
    #[prost(enumeration = "PacketType", tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub stat: Option<Stat>,
    #[prost(uint32, tag = "3")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// The kind of a [`Packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PacketType {
    /// One entry of the listing; an empty stat ends the listing.
    Stat = 0,
    /// The receiver requests the contents of the entry with this ID.
    Req = 1,
    /// A chunk of an entry's contents; an empty chunk ends the entry.
    Data = 2,
    /// The receiver has every file it needs. The sender replies with FIN and stops.
    Fin = 3,
    /// Either side failed, and `data` contains the message.
    Err = 4,
}

impl Packet {
    pub fn stat(stat: Stat) -> Self {
        Packet {
            r#type: PacketType::Stat as i32,
            stat: Some(stat),
            ..Packet::default()
        }
    }

    /// The empty STAT that ends the listing.
    pub fn end_of_listing() -> Self {
        Packet {
            r#type: PacketType::Stat as i32,
            ..Packet::default()
        }
    }

    pub fn data(id: u32, data: Vec<u8>) -> Self {
        Packet {
            r#type: PacketType::Data as i32,
            id,
            data,
            ..Packet::default()
        }
    }

    pub fn request(id: u32) -> Self {
        Packet {
            r#type: PacketType::Req as i32,
            id,
            ..Packet::default()
        }
    }

    pub fn fin() -> Self {
        Packet {
            r#type: PacketType::Fin as i32,
            ..Packet::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Packet {
            r#type: PacketType::Err as i32,
            data: message.into().into_bytes(),
            ..Packet::default()
        }
    }
}

/// One file's metadata (`fsutil.types.Stat`). `mode` contains Go `os.FileMode` bits, not a POSIX
/// `st_mode`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stat {
    /// Relative to the shared folder, `/`-separated, no leading `/`.
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub mod_time: i64,
    /// A symlink's target, or for the second and later names of a hard-linked file, the path
    /// sent first.
    #[prost(string, tag = "7")]
    pub linkname: String,
    #[prost(int64, tag = "8")]
    pub devmajor: i64,
    #[prost(int64, tag = "9")]
    pub devminor: i64,
    #[prost(btree_map = "string, bytes", tag = "10")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// A chunk of the exporter's output stream (`moby.filesync.v1.BytesMessage`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BytesMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

/// `moby.filesync.v1.CredentialsRequest`: BuildKit requests a registry's login.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialsRequest {
    #[prost(string, tag = "1")]
    pub host: String,
}

/// `moby.filesync.v1.CredentialsResponse`; both fields empty means anonymous.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialsResponse {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(string, tag = "2")]
    pub secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn end_of_listing_has_no_stat() {
        let bytes = Packet::end_of_listing().encode_to_vec();
        assert!(bytes.is_empty(), "{bytes:?}");
        let decoded = Packet::decode(bytes.as_slice()).unwrap();
        assert!(decoded.stat.is_none());
    }

    #[test]
    fn stat_field_numbers() {
        let stat = Stat {
            path: "a".into(),
            mode: 1 << 31,
            linkname: "b".into(),
            xattrs: BTreeMap::from([("user.x".to_owned(), b"1".to_vec())]),
            ..Stat::default()
        };
        let bytes = stat.encode_to_vec();
        // path (1, len 1), mode (2, varint), linkname (7, len 1), xattrs (10, map entry).
        assert_eq!(&bytes[..3], &[0x0a, 1, b'a']);
        assert_eq!(bytes[3], 0x10);
        let linkname = bytes.windows(3).position(|w| w == [0x3a, 1, b'b']);
        assert!(linkname.is_some(), "{bytes:?}");
        assert!(bytes.contains(&0x52), "xattrs use field 10: {bytes:?}");
        assert_eq!(Stat::decode(bytes.as_slice()).unwrap(), stat);
    }

    #[test]
    fn packet_round_trip() {
        let packet = Packet::data(7, b"hello".to_vec());
        let decoded = Packet::decode(packet.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.r#type(), PacketType::Data);
        assert_eq!(decoded.id, 7);
        assert_eq!(decoded.data, b"hello");
    }
}

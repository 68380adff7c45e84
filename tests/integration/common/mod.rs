//! Test harness, by role: the PKI ([`pki`]), the gateway process ([`gateway`]), upstreams and
//! bodies ([`upstream`]), clients ([`client`]), a document server ([`docs`]), and one way to
//! wait ([`wait`]).

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use certgate_testpki::{Ca, Issued, LeafSpec};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_certgate");

mod client;
mod docs;
mod gateway;
mod pki;
mod token_endpoint;
mod upstream;
mod wait;

pub use client::*;
pub use docs::*;
pub use gateway::*;
pub use pki::*;
pub use token_endpoint::{Client as TokenClient, TokenEndpoint, ec_public_key};
pub use upstream::*;
pub use wait::*;

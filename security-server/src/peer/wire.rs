//! One `Exchange` call on the wire (DESIGN §5.2): how an X-Road error rides in a gRPC status,
//! and the provider's answer-then-confirm contract. The provider's server sends its signed
//! answer at once and ends the call when its response record is durable; the client's server
//! checks and logs the answer meanwhile, so the two servers' fsyncs overlap.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use exchange::XRoadError;
use futures_util::stream::{self, BoxStream, Stream, StreamExt as _, TryStreamExt as _};
use proto::v1 as pb;
use proto::v1::peer_client::PeerClient;
use tonic::transport::Channel;

use crate::spool::{self, MessageBody, ReadError, Room, Spool};

/// The gRPC metadata key that carries an X-Road error type between servers.
pub const ERROR_METADATA: &str = "x-road-error";

/// An X-Road error as a gRPC status: the type in metadata, the message as the status message.
pub fn error_to_status(e: &XRoadError) -> tonic::Status {
    let mut status = tonic::Status::failed_precondition(e.message.clone());
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(e.error_type()) {
        status.metadata_mut().insert(ERROR_METADATA, v);
    }
    status
}

/// The X-Road error a provider's server reported in a status, if it carried one.
pub fn status_to_error(status: &tonic::Status) -> Option<XRoadError> {
    let error_type = status.metadata().get(ERROR_METADATA)?.to_str().ok()?;
    Some(XRoadError::from_remote(error_type, status.message()))
}

/// A message of an `Exchange` stream either way: `ExchangeRequest` or `ExchangeResponse`, which
/// are laid out alike (the signed header, the body's length and first part in the first
/// message; a further part in each one after).
pub trait Part: Send + 'static {
    fn new(header: Option<pb::SignedHeader>, body: Bytes, body_length: Option<u64>) -> Self;
    fn into_parts(self) -> (Option<pb::SignedHeader>, Vec<u8>, Option<u64>);
}

impl Part for pb::ExchangeRequest {
    fn new(header: Option<pb::SignedHeader>, body: Bytes, body_length: Option<u64>) -> Self {
        pb::ExchangeRequest {
            header,
            body: body.into(),
            body_length,
        }
    }

    fn into_parts(self) -> (Option<pb::SignedHeader>, Vec<u8>, Option<u64>) {
        (self.header, self.body, self.body_length)
    }
}

impl Part for pb::ExchangeResponse {
    fn new(header: Option<pb::SignedHeader>, body: Bytes, body_length: Option<u64>) -> Self {
        pb::ExchangeResponse {
            header,
            body: body.into(),
            body_length,
        }
    }

    fn into_parts(self) -> (Option<pb::SignedHeader>, Vec<u8>, Option<u64>) {
        (self.header, self.body, self.body_length)
    }
}

/// A signed header and its body as the messages of an `Exchange` stream, in parts of at most
/// [`spool::CHUNK`] bytes: the header with the first part of a body in memory (all of a small
/// one: one message, as earlier versions sent it), then the other parts. A spooled part that
/// cannot be read ends the stream with the error.
pub fn outgoing<M: Part>(
    header: pb::SignedHeader,
    body: &MessageBody,
) -> BoxStream<'static, io::Result<M>> {
    let length = Some(body.len());
    let Some(memory) = body.memory() else {
        let first = M::new(Some(header), Bytes::new(), length);
        return stream::once(async move { Ok(first) })
            .chain(body.parts().map_ok(|part| M::new(None, part, None)))
            .boxed();
    };
    let bytes = memory.bytes().clone();
    let mut parts: Vec<Bytes> = (0..bytes.len())
        .step_by(spool::CHUNK)
        .map(|at| bytes.slice(at..bytes.len().min(at + spool::CHUNK)))
        .collect();
    let first = if parts.is_empty() {
        Bytes::new()
    } else {
        parts.remove(0)
    };
    let first = M::new(Some(header), first, length);
    stream::iter(
        std::iter::once(first)
            .chain(parts.into_iter().map(|part| M::new(None, part, None)))
            .map(Ok),
    )
    .boxed()
}

/// Reads the body of a received `Exchange` stream into `spool`: `first` (the first message's
/// part, with the announced length), then the parts of the messages after it until the body is
/// whole. The stream is left just after the body (the response's end comes after it).
pub async fn read_body<M: Part>(
    (spool, room): (&Spool, Room),
    (first, length): (Vec<u8>, Option<u64>),
    rest: &mut tonic::Streaming<M>,
) -> Result<MessageBody, ReadError> {
    // Without a length, an earlier version's message: the whole body is in the first one.
    let mut body = spool
        .reader(length.or(Some(first.len() as u64)), room)
        .await?;
    body.push(&first).await?;
    while length.is_some_and(|n| body.len() < n) {
        let part = match rest.message().await {
            Ok(Some(m)) => match m.into_parts() {
                (None, part, None) => part,
                _ => {
                    return Err(ReadError::Broken(
                        "a further message of the exchange carries a header".into(),
                    ));
                }
            },
            Ok(None) => {
                return Err(ReadError::Broken(
                    "the exchange ended before its body was whole".into(),
                ));
            }
            Err(status) => {
                return Err(ReadError::Broken(format!(
                    "the exchange broke off: {}",
                    status.message()
                )));
            }
        };
        body.push(&part).await?;
    }
    body.finish().await
}

/// What the provider's server sends on an `Exchange` call: the signed answer at once (its
/// header, then its body), then the end of the call once its response record is durable
/// (status OK), or an error status if its log did not keep the record. The client's server
/// checks and logs the answer meanwhile, so the two servers' fsyncs overlap instead of
/// following each other.
pub struct AnswerThenConfirm {
    answer: BoxStream<'static, io::Result<pb::ExchangeResponse>>,
    /// Held until the body is sent (its room in the memory budget, its spool file).
    body: Option<MessageBody>,
    confirm: Option<Confirming>,
}

/// Waits until the provider's response record is durable.
type Confirming = Pin<Box<dyn Future<Output = Result<(), XRoadError>> + Send>>;

impl AnswerThenConfirm {
    pub fn new(
        header: pb::SignedHeader,
        body: MessageBody,
        confirm: impl Future<Output = Result<(), XRoadError>> + Send + 'static,
    ) -> Self {
        Self {
            answer: outgoing(header, &body),
            body: Some(body),
            confirm: Some(Box::pin(confirm)),
        }
    }
}

impl std::fmt::Debug for AnswerThenConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerThenConfirm")
            .field("answer_sent", &self.body.is_none())
            .field("confirmed", &self.confirm.is_none())
            .finish()
    }
}

impl Stream for AnswerThenConfirm {
    type Item = Result<pb::ExchangeResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.body.is_some() {
            match std::task::ready!(self.answer.poll_next_unpin(cx)) {
                Some(Ok(message)) => return Poll::Ready(Some(Ok(message))),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "a spooled response body could not be read");
                    self.body = None;
                    self.confirm = None;
                    return Poll::Ready(Some(Err(tonic::Status::internal(
                        "the response body could not be read back from the spool",
                    ))));
                }
                None => self.body = None,
            }
        }
        let Some(confirm) = self.confirm.as_mut() else {
            return Poll::Ready(None);
        };
        let result = std::task::ready!(confirm.as_mut().poll(cx));
        self.confirm = None;
        // A failed log was reported where it failed (`MessageLogger`).
        Poll::Ready(result.err().map(|e| Err(error_to_status(&e))))
    }
}

/// The rest of an `Exchange` call after the provider's answer, which says whether the
/// provider's log kept it.
#[derive(Debug)]
pub struct Confirmation(tonic::Streaming<pb::ExchangeResponse>);

impl Confirmation {
    /// The stream the answer's body is read from first ([`read_body`]).
    pub fn stream(&mut self) -> &mut tonic::Streaming<pb::ExchangeResponse> {
        &mut self.0
    }

    /// Waits for the end of the call: `Ok` once the provider's server confirmed its response
    /// record durable; its error status otherwise (or if the call broke off, or carried a
    /// second response).
    pub async fn confirmed(mut self) -> Result<(), tonic::Status> {
        match self.0.message().await? {
            None => Ok(()),
            Some(_) => Err(tonic::Status::internal(
                "the provider's security server sent more than one response",
            )),
        }
    }
}

/// Makes an `Exchange` call, streaming the request, and waits for the first message of the
/// answer: `Ok(None)` if the call ended OK without one (a provider breaking the contract); the
/// call's status if it was refused or failed.
pub async fn call_exchange(
    client: &mut PeerClient<Channel>,
    request: BoxStream<'static, io::Result<pb::ExchangeRequest>>,
) -> Result<Option<(pb::ExchangeResponse, Confirmation)>, tonic::Status> {
    // A part that cannot be read ends the request early (`outgoing`).
    let request = UntilError(Some(request));
    let mut rest = client.exchange(request).await?.into_inner();
    Ok(rest
        .message()
        .await?
        .map(|answer| (answer, Confirmation(rest))))
}

/// A request stream that ends at the first part that cannot be read (the receiver then finds
/// the body shorter than announced).
struct UntilError(Option<BoxStream<'static, io::Result<pb::ExchangeRequest>>>);

impl Stream for UntilError {
    type Item = pb::ExchangeRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(parts) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        match std::task::ready!(parts.poll_next_unpin(cx)) {
            Some(Ok(message)) => Poll::Ready(Some(message)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "a spooled request body could not be read");
                self.0 = None;
                Poll::Ready(None)
            }
            None => {
                self.0 = None;
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use tokio::sync::oneshot;

    use super::*;
    use std::sync::Mutex;

    use std::time::Duration;

    use exchange::ServerProxyCode;
    use tonic::transport::Endpoint;

    type Confirm = oneshot::Receiver<Result<(), XRoadError>>;

    /// A provider's server that answers with the body it got at once and ends the call when
    /// the test says so, or refuses when it has nothing to confirm with.
    struct FakeProvider {
        confirm: Mutex<Option<Confirm>>,
        spool: Spool,
        _dir: tempfile::TempDir,
    }

    /// Bodies up to 1 KiB stay in memory.
    fn spool(dir: &std::path::Path) -> Spool {
        Spool::new(dir, 1024, 1 << 20, 1 << 30).unwrap()
    }

    #[tonic::async_trait]
    impl pb::peer_server::Peer for FakeProvider {
        type ExchangeStream = AnswerThenConfirm;

        async fn exchange(
            &self,
            request: tonic::Request<tonic::Streaming<pb::ExchangeRequest>>,
        ) -> Result<tonic::Response<AnswerThenConfirm>, tonic::Status> {
            let Some(confirm) = self.confirm.lock().unwrap().take() else {
                return Err(error_to_status(&XRoadError::new(
                    ServerProxyCode::AccessDenied,
                    "not you",
                )));
            };
            let mut stream = request.into_inner();
            let (header, first, length) = stream.message().await?.unwrap().into_parts();
            let body = read_body((&self.spool, Room::Wait), (first, length), &mut stream)
                .await
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            Ok(tonic::Response::new(AnswerThenConfirm::new(
                header.unwrap(),
                body,
                async move { confirm.await.unwrap() },
            )))
        }

        async fn get_configuration(
            &self,
            _: tonic::Request<pb::GetConfigurationRequest>,
        ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }

        async fn offer_configuration(
            &self,
            _: tonic::Request<pb::OfferConfigurationRequest>,
        ) -> Result<tonic::Response<pb::OfferConfigurationResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }

        async fn add_checkpoint(
            &self,
            _: tonic::Request<pb::AddCheckpointRequest>,
        ) -> Result<tonic::Response<pb::AddCheckpointResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }
    }

    /// Serves the fake over plain HTTP/2 on loopback; a channel to it.
    async fn connect(confirm: Option<Confirm>) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let router = tonic::service::Routes::new(pb::peer_server::PeerServer::new(FakeProvider {
            confirm: Mutex::new(confirm),
            spool: spool(dir.path()),
            _dir: dir,
        }))
        .into_axum_router();
        tokio::spawn(runtime::serve_http(
            listener,
            None,
            router,
            std::future::pending(),
        ));
        Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn in_memory(body: &[u8]) -> MessageBody {
        MessageBody::in_memory(exchange::HashedBody::new(Bytes::copy_from_slice(body)))
    }

    fn request(body: &[u8]) -> BoxStream<'static, io::Result<pb::ExchangeRequest>> {
        outgoing(pb::SignedHeader::default(), &in_memory(body))
    }

    async fn bytes_of(body: &MessageBody) -> Vec<u8> {
        let mut out = Vec::new();
        let mut parts = body.parts();
        while let Some(part) = parts.next().await {
            out.extend_from_slice(&part.unwrap());
        }
        out
    }

    /// An exchange the fake answered while its record is still being synced, and the sender
    /// with which the test ends the provider's side.
    async fn answered() -> (oneshot::Sender<Result<(), XRoadError>>, Confirmation) {
        let (confirm, confirmed_by_provider) = oneshot::channel();
        let mut client = PeerClient::new(connect(Some(confirmed_by_provider)).await);
        let (answer, confirmation) = call_exchange(&mut client, request(b"records"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.body, b"records");
        assert_eq!(answer.body_length, Some(7));
        (confirm, confirmation)
    }

    #[tokio::test]
    async fn a_body_larger_than_memory_goes_in_parts_both_ways_and_arrives_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool(dir.path());
        let original: Vec<u8> = (0..3 * spool::CHUNK + 5).map(|i| (i % 253) as u8).collect();
        let body = spool
            .read(
                (None, Room::Wait),
                stream::iter(
                    original
                        .chunks(10_000)
                        .map(|c| Ok::<_, String>(Bytes::copy_from_slice(c))),
                ),
            )
            .await
            .unwrap();
        assert!(body.memory().is_none(), "spooled");

        let (confirm, confirmed_by_provider) = oneshot::channel();
        let mut client = PeerClient::new(connect(Some(confirmed_by_provider)).await);
        let (answer, mut confirmation) =
            call_exchange(&mut client, outgoing(pb::SignedHeader::default(), &body))
                .await
                .unwrap()
                .unwrap();
        let (header, first, length) = answer.into_parts();
        assert!(header.is_some());
        assert!(first.is_empty(), "a spooled body follows its header");
        let echoed = read_body(
            (&spool, Room::OrSpool),
            (first, length),
            confirmation.stream(),
        )
        .await
        .unwrap();
        assert_eq!(echoed.sha256(), body.sha256());
        assert_eq!(bytes_of(&echoed).await, original);
        confirm.send(Ok(())).unwrap();
        confirmation.confirmed().await.unwrap();
    }

    #[tokio::test]
    async fn a_body_that_ends_before_its_announced_length_is_refused() {
        let (_confirm, confirmed_by_provider) = oneshot::channel();
        let mut client = PeerClient::new(connect(Some(confirmed_by_provider)).await);
        let short = pb::ExchangeRequest {
            header: Some(pb::SignedHeader::default()),
            body: b"only this".to_vec(),
            body_length: Some(1000),
        };
        let status = call_exchange(&mut client, stream::iter([Ok(short)]).boxed())
            .await
            .unwrap_err();
        assert!(
            status.message().contains("ended before its body was whole"),
            "{status:?}"
        );
    }

    #[tokio::test]
    async fn the_answer_arrives_before_the_provider_confirms_and_the_call_ends_ok_after() {
        let (confirm, confirmation) = answered().await;
        let mut ending = tokio::spawn(confirmation.confirmed());
        // The call does not end before the provider confirms.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut ending)
                .await
                .is_err()
        );
        confirm.send(Ok(())).unwrap();
        ending.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_provider_whose_log_did_not_keep_the_answer_ends_the_call_with_its_error() {
        let (confirm, confirmation) = answered().await;
        confirm
            .send(Err(XRoadError::new(
                ServerProxyCode::LoggingFailed,
                "disk gone",
            )))
            .unwrap();
        let status = confirmation.confirmed().await.unwrap_err();
        let e = status_to_error(&status).expect("an X-Road error");
        assert_eq!(e.error_type(), "Server.ServerProxy.LoggingFailed");
    }

    #[tokio::test]
    async fn a_refused_exchange_ends_with_the_providers_error_and_no_answer() {
        let mut client = PeerClient::new(connect(None).await);
        let status = call_exchange(&mut client, request(b"records"))
            .await
            .unwrap_err();
        let e = status_to_error(&status).expect("an X-Road error");
        assert_eq!(e.error_type(), "Server.ServerProxy.AccessDenied");
    }

    /// The call as a client's server of an earlier version makes it: unary, the whole body in
    /// one message (tonic's unary client, which waits for the status too).
    async fn unary_call(
        channel: Channel,
        request: pb::ExchangeRequest,
    ) -> Result<pb::ExchangeResponse, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static("/xroad.v1.Peer/Exchange");
        let codec = tonic_prost::ProstCodec::<pb::ExchangeRequest, pb::ExchangeResponse>::default();
        grpc.unary(tonic::Request::new(request), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }

    #[tokio::test]
    async fn a_unary_caller_gets_the_answer_with_the_confirmation_or_the_error_instead() {
        for kept in [true, false] {
            let (confirm, confirmed_by_provider) = oneshot::channel();
            let channel = connect(Some(confirmed_by_provider)).await;
            // As an earlier version sends it: the whole body, no length.
            let earlier = pb::ExchangeRequest {
                header: Some(pb::SignedHeader::default()),
                body: b"x".to_vec(),
                body_length: None,
            };
            let whole_call = tokio::spawn(unary_call(channel, earlier));
            confirm
                .send(if kept {
                    Ok(())
                } else {
                    Err(XRoadError::new(ServerProxyCode::LoggingFailed, "disk gone"))
                })
                .unwrap();
            let result = whole_call.await.unwrap();
            if kept {
                assert_eq!(result.unwrap().body, b"x");
            } else {
                let status = result.unwrap_err();
                assert_eq!(
                    status_to_error(&status).unwrap().error_type(),
                    "Server.ServerProxy.LoggingFailed"
                );
            }
        }
    }
}

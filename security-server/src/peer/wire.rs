//! One `Exchange` call on the wire (DESIGN §5.2): how an X-Road error rides in a gRPC status,
//! and the provider's answer-then-confirm contract. The provider's server sends its signed
//! answer at once and ends the call when its response record is durable; the client's server
//! checks and logs the answer meanwhile, so the two servers' fsyncs overlap.

use std::pin::Pin;
use std::task::{Context, Poll};

use exchange::XRoadError;
use proto::v1 as pb;
use proto::v1::peer_client::PeerClient;
use tonic::codegen::tokio_stream::Stream;
use tonic::transport::Channel;

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

/// What the provider's server sends on an `Exchange` call: the signed answer at once, then the
/// end of the call once its response record is durable (status OK), or an error status if its
/// log did not keep the record. The client's server checks and logs the answer meanwhile, so
/// the two servers' fsyncs overlap instead of following each other.
pub struct AnswerThenConfirm {
    answer: Option<pb::ExchangeResponse>,
    confirm: Option<Confirming>,
}

/// Waits until the provider's response record is durable.
type Confirming = Pin<Box<dyn Future<Output = Result<(), XRoadError>> + Send>>;

impl AnswerThenConfirm {
    pub fn new(
        answer: pb::ExchangeResponse,
        confirm: impl Future<Output = Result<(), XRoadError>> + Send + 'static,
    ) -> Self {
        Self {
            answer: Some(answer),
            confirm: Some(Box::pin(confirm)),
        }
    }
}

impl std::fmt::Debug for AnswerThenConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerThenConfirm")
            .field("answer_sent", &self.answer.is_none())
            .field("confirmed", &self.confirm.is_none())
            .finish()
    }
}

impl Stream for AnswerThenConfirm {
    type Item = Result<pb::ExchangeResponse, tonic::Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(answer) = self.answer.take() {
            return Poll::Ready(Some(Ok(answer)));
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

/// Makes an `Exchange` call and waits for the answer: `Ok(None)` if the call ended OK without
/// one (a provider breaking the contract); the call's status if it was refused or failed.
pub async fn call_exchange(
    client: &mut PeerClient<Channel>,
    request: pb::ExchangeRequest,
) -> Result<Option<(pb::ExchangeResponse, Confirmation)>, tonic::Status> {
    let mut rest = client.exchange(request).await?.into_inner();
    Ok(rest
        .message()
        .await?
        .map(|answer| (answer, Confirmation(rest))))
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

    /// A provider's server that answers at once and ends the call when the test says so, or
    /// refuses when it has nothing to confirm with.
    struct FakeProvider(Mutex<Option<Confirm>>);

    #[tonic::async_trait]
    impl pb::peer_server::Peer for FakeProvider {
        type ExchangeStream = AnswerThenConfirm;

        async fn exchange(
            &self,
            request: tonic::Request<pb::ExchangeRequest>,
        ) -> Result<tonic::Response<AnswerThenConfirm>, tonic::Status> {
            let Some(confirm) = self.0.lock().unwrap().take() else {
                return Err(error_to_status(&XRoadError::new(
                    ServerProxyCode::AccessDenied,
                    "not you",
                )));
            };
            let answer = pb::ExchangeResponse {
                header: None,
                body: request.into_inner().body,
            };
            Ok(tonic::Response::new(AnswerThenConfirm::new(
                answer,
                async move { confirm.await.unwrap() },
            )))
        }

        async fn get_configuration(
            &self,
            _: tonic::Request<pb::GetConfigurationRequest>,
        ) -> Result<tonic::Response<pb::SignedConfiguration>, tonic::Status> {
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
        let router = tonic::service::Routes::new(pb::peer_server::PeerServer::new(FakeProvider(
            Mutex::new(confirm),
        )))
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

    fn request(body: &[u8]) -> pb::ExchangeRequest {
        pb::ExchangeRequest {
            header: None,
            body: body.to_vec(),
        }
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
        (confirm, confirmation)
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

    /// The call as a client's server that reads it as unary (as before the answer was sent
    /// early) makes it: tonic's unary client, which waits for the status too.
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
            let whole_call = tokio::spawn(unary_call(channel, request(b"x")));
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

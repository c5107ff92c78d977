//! S3 through aws-sdk-s3 and the standard AWS configuration chain.
//!
//! Retries and timeouts are the SDK's. What the SDK does not do is handled here: conflicts of
//! concurrent conditional writes (409) are retried a bounded number of times, and a multipart
//! upload is aborted, after its in-flight parts have stopped, whenever it does not complete.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    ByteRange, Detail, Listed, Object, ObjectKind, ObjectMeta, Op, Precondition, Sse, StoreError,
    WritePolicy,
};
use crate::aws::Timeouts;
use crate::signals;

/// Parts uploading at once: enough to keep the link busy on two cores, few enough to bound memory.
const PARTS_IN_FLIGHT: usize = 3;
/// Attempts at a write that meets a concurrent-write conflict (409), which S3 asks to retry.
const CONFLICT_ATTEMPTS: usize = 5;

/// An S3 bucket.
#[derive(Debug)]
pub(crate) struct S3Store {
    client: Client,
    bucket: String,
    policy: WritePolicy,
    /// The configured timeouts; upload parts get a read timeout as long as the operation's.
    timeouts: Timeouts,
}

impl S3Store {
    /// A client from a loaded AWS configuration.
    ///
    /// A custom endpoint (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`) means an S3-compatible
    /// store, which wants path-style addressing.
    pub(crate) fn new(
        shared: &aws_config::SdkConfig,
        timeouts: Timeouts,
        bucket: String,
        policy: WritePolicy,
    ) -> Self {
        let custom_endpoint =
            shared.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let config = aws_sdk_s3::config::Builder::from(shared)
            .force_path_style(custom_endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
            bucket,
            policy,
            timeouts,
        }
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        Ok(self
            .read(key, None)
            .await?
            .map(|(body, etag)| Object { body, etag }))
    }

    pub(super) async fn get_range(
        &self,
        key: &str,
        range: ByteRange,
    ) -> Result<Option<Bytes>, StoreError> {
        let header = match range {
            ByteRange::Tail(n) => format!("bytes=-{n}"),
        };
        Ok(self.read(key, Some(header)).await?.map(|(body, _)| body))
    }

    /// A small read, whole or ranged. A body cut mid-stream (which the SDK does not retry) is
    /// read again from the start, a bounded number of times: these objects are small.
    async fn read(
        &self,
        key: &str,
        range: Option<String>,
    ) -> Result<Option<(Bytes, String)>, StoreError> {
        let mut attempt = 0;
        loop {
            let response = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_range(range.clone())
                .send()
                .await;
            let output = match response {
                Ok(output) => output,
                Err(err) if is_not_found(&err) => return Ok(None),
                Err(err) => return Err(self.error(Op::Read, key, err)),
            };
            let etag = output.e_tag().unwrap_or_default().to_owned();
            match output.body.collect().await {
                Ok(body) => return Ok(Some((body.into_bytes(), etag))),
                Err(err) if attempt < super::DOWNLOAD_RESUMES => {
                    attempt += 1;
                    tracing::warn!("reading `{key}` was cut ({err}); reading it again");
                }
                Err(err) => return Err(self.detail(Op::Read, key, err.to_string())),
            }
        }
    }

    pub(super) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectMeta {
                size: output.content_length().unwrap_or(0).max(0) as u64,
                etag: output.e_tag().unwrap_or_default().to_owned(),
            })),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(self.error(Op::Head, key, err)),
        }
    }

    pub(super) async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| self.error(Op::List, prefix, err))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(Listed {
                        key: key.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        modified: object.last_modified().and_then(|t| {
                            jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
                        }),
                    });
                }
            }
        }
        Ok(found)
    }

    pub(super) async fn top_level(&self) -> Result<Vec<String>, StoreError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .delimiter("/")
            .send()
            .await
            .map_err(|err| self.error(Op::List, "", err))?;
        Ok(page
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix())
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect())
    }

    pub(super) async fn put(
        &self,
        key: &str,
        body: Bytes,
        when: &Precondition,
    ) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body.clone()))
                .content_type("text/plain; charset=utf-8");
            request = match &self.policy.sse {
                Sse::Aes256 => request.server_side_encryption(ServerSideEncryption::Aes256),
                Sse::Kms => request
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .set_ssekms_key_id(self.policy.kms_key_id.clone()),
            };
            request = request.storage_class(self.storage_class(ObjectKind::Small));
            request = match when {
                Precondition::None => request,
                Precondition::IfAbsent => request.if_none_match("*"),
                Precondition::IfMatch(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(_) => return Ok(()),
                Err(err) if status_of(&err) == Some(409) && attempt < CONFLICT_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(key, attempt, "conditional write conflict (409); retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
                }
                // S3 answers 412 when an If-Match object changed, but 404 when it was deleted
                // (moto always does): either way the condition is false.
                Err(err)
                    if matches!(when, Precondition::IfMatch(_)) && status_of(&err) == Some(404) =>
                {
                    return Err(StoreError::PreconditionFailed {
                        op: Op::Write,
                        location: self.location(),
                        key: key.to_owned(),
                    });
                }
                Err(err) => return Err(self.error(Op::Write, key, err)),
            }
        }
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            Err(err) => Err(self.error(Op::Delete, key, err)),
        }
    }

    pub(super) async fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        let changed = || StoreError::PreconditionFailed {
            op: Op::Delete,
            location: self.location(),
            key: key.to_owned(),
        };
        // The HEAD covers stores that ignore `If-Match` on DELETE; S3 itself checks the header.
        match self.head(key).await? {
            Some(meta) if same_etag(&meta.etag, etag) => {}
            _ => return Err(changed()),
        }
        let request = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(etag);
        match request.send().await {
            Ok(_) => Ok(()),
            // Gone meanwhile (S3 and moto answer 404 to an If-Match on a missing key).
            Err(err) if is_not_found(&err) => Err(changed()),
            Err(err) => Err(self.error(Op::Delete, key, err)),
        }
    }

    pub(super) async fn download(
        &self,
        key: &str,
        chunks: mpsc::Sender<Bytes>,
    ) -> Result<Option<u64>, StoreError> {
        let mut received = 0u64;
        let mut etag: Option<String> = None;
        let mut resumes = 0;
        loop {
            let mut request = self.client.get_object().bucket(&self.bucket).key(key);
            if received > 0 {
                request = request.range(format!("bytes={received}-"));
            }
            if let Some(etag) = &etag {
                request = request.if_match(etag);
            }
            let output = match request.send().await {
                Ok(output) => output,
                Err(err) if is_not_found(&err) && etag.is_none() => return Ok(None),
                Err(err) => return Err(self.error(Op::Read, key, err)),
            };
            if etag.is_none() {
                etag = output.e_tag().map(str::to_owned);
            }
            // A server that ignores the range sends the whole object again: skip what we have.
            let mut skip = if received > 0 && output.content_range().is_none() {
                received
            } else {
                0
            };
            let mut body = output.body;
            loop {
                match body.next().await {
                    Some(Ok(mut bytes)) => {
                        let dropped = skip.min(bytes.len() as u64);
                        skip -= dropped;
                        let bytes = bytes.split_off(dropped as usize);
                        if bytes.is_empty() {
                            continue;
                        }
                        received += bytes.len() as u64;
                        if chunks.send(bytes).await.is_err() {
                            return Err(self.detail(Op::Read, key, "the reader stopped".into()));
                        }
                    }
                    Some(Err(err)) if resumes < super::DOWNLOAD_RESUMES => {
                        resumes += 1;
                        tracing::warn!(
                            "download of `{key}` cut after {received} bytes ({err}); resuming \
                             ({resumes}/{})",
                            super::DOWNLOAD_RESUMES
                        );
                        break;
                    }
                    Some(Err(err)) => {
                        return Err(self.detail(
                            Op::Read,
                            key,
                            format!("cut after {received} bytes, {resumes} resumes: {err}"),
                        ));
                    }
                    None => return Ok(Some(received)),
                }
            }
        }
    }

    pub(super) async fn upload(
        &self,
        key: &str,
        parts: mpsc::Receiver<Bytes>,
        cancel: &CancellationToken,
    ) -> Result<u64, StoreError> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .storage_class(self.storage_class(ObjectKind::Archive));
        create = match &self.policy.sse {
            Sse::Aes256 => create.server_side_encryption(ServerSideEncryption::Aes256),
            Sse::Kms => create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(self.policy.kms_key_id.clone()),
        };
        let created = create
            .send()
            .await
            .map_err(|err| self.error(Op::Upload, key, err))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();

        let outcome = match self.upload_parts(key, &upload_id, parts, cancel).await {
            Ok((completed, size)) => self
                .complete(key, &upload_id, completed, size)
                .await
                .map(|()| size),
            Err(err) => Err(err),
        };
        if outcome.is_err() {
            self.abort(key, &upload_id).await;
        }
        outcome
    }

    /// Sends parts as they arrive, a few at a time; stops them all on the first error or signal.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: mpsc::Receiver<Bytes>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<CompletedPart>, u64), StoreError> {
        let mut in_flight: JoinSet<Result<CompletedPart, StoreError>> = JoinSet::new();
        let mut completed = Vec::new();
        let mut size = 0u64;
        let mut next_number = 1;
        let mut input_open = true;
        let result = loop {
            if !input_open && in_flight.is_empty() {
                break Ok(());
            }
            let can_send = input_open && in_flight.len() < PARTS_IN_FLIGHT;
            tokio::select! {
                biased;
                () = cancel.cancelled() => break Err(StoreError::Interrupted { signal: signals::received() }),
                Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                    match joined {
                        Ok(Ok(part)) => completed.push(part),
                        Ok(Err(err)) => break Err(err),
                        Err(join) => break Err(self.detail(Op::Upload, key, join.to_string())),
                    }
                }
                part = parts.recv(), if can_send => match part {
                    Some(bytes) => {
                        size += bytes.len() as u64;
                        in_flight.spawn(self.upload_part(key, upload_id, next_number, bytes));
                        next_number += 1;
                    }
                    None => input_open = false,
                },
            }
        };
        if let Err(err) = result {
            // Abort only after in-flight parts stop, or a part could land after the abort.
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            return Err(err);
        }
        completed.sort_by_key(|part| part.part_number());
        Ok((completed, size))
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Bytes,
    ) -> impl Future<Output = Result<CompletedPart, StoreError>> + Send + 'static {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(bytes))
            .customize()
            .config_override(
                aws_sdk_s3::Config::builder().timeout_config(self.timeouts.sdk_for_large_body()),
            );
        let (location, key) = (self.location(), key.to_owned());
        async move {
            let output = request
                .send()
                .await
                .map_err(|err| classify(Op::Upload, location, key, err))?;
            Ok(CompletedPart::builder()
                .set_e_tag(output.e_tag().map(str::to_owned))
                .part_number(number)
                .build())
        }
    }

    /// Completes the upload unless an object already has the key. If the answer is lost or
    /// the SDK's retry meets our own completed object (412), the object is checked by size.
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        size: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .if_none_match("*")
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => self.error(Op::Upload, key, err),
        };
        // The key was claimed for this build alone: an object of our size there is ours.
        match self.head(key).await {
            Ok(Some(meta)) if meta.size == size => {
                tracing::debug!(key, "completion answer lost, but the object is there");
                Ok(())
            }
            _ => Err(err),
        }
    }

    async fn abort(&self, key: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(
                key,
                upload_id,
                "could not abort the multipart upload ({}); a bucket lifecycle rule \
                 (docs/iam.md) removes it later",
                DisplayErrorContext(&err)
            );
        }
    }

    fn storage_class(&self, kind: ObjectKind) -> StorageClass {
        match (kind, &self.policy.storage_class) {
            (ObjectKind::Archive, Some(class)) => StorageClass::from(class.as_str()),
            _ => StorageClass::Standard,
        }
    }

    fn location(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn error<E>(&self, op: Op, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        classify(op, self.location(), key.to_owned(), err)
    }

    fn detail(&self, op: Op, key: &str, text: String) -> StoreError {
        StoreError::Request {
            op,
            location: self.location(),
            key: key.to_owned(),
            source: Detail(text),
        }
    }
}

/// Turns an SDK error into a store error that names the bucket, key and step.
fn classify<E>(op: Op, location: String, key: String, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = status_of(&err);
    let code = err.code().unwrap_or_default().to_owned();
    let text = DisplayErrorContext(&err).to_string();
    if let Some(problem) = transport_problem(&err, &text) {
        // The SDK's full account (a Debug dump) is for `-v`; the message says what to fix.
        tracing::info!("{op} `{key}` in {location}: {text}");
        return match problem {
            Transport::TimedOut(detail) => StoreError::TimedOut {
                op,
                location,
                key,
                detail,
            },
            Transport::Unreachable(detail) => StoreError::Unreachable { location, detail },
            Transport::NoRegion => StoreError::NoRegion,
        };
    }
    if code == "NoSuchBucket" {
        let bucket = location.trim_start_matches("s3://").to_owned();
        return StoreError::NoSuchBucket { bucket };
    }
    if status == Some(412) || code == "PreconditionFailed" {
        return StoreError::PreconditionFailed { op, location, key };
    }
    if status == Some(403) || code == "AccessDenied" {
        return StoreError::AccessDenied { op, location, key };
    }
    if text.contains("CredentialsNotLoaded") || text.contains("provided credentials") {
        return StoreError::NoCredentials {
            source: Detail(text),
        };
    }
    StoreError::Request {
        op,
        location,
        key,
        source: Detail(text),
    }
}

/// A failure to reach the service at all, as opposed to an answer it gave.
enum Transport {
    /// No answer in time: the connect, read or operation timeout.
    TimedOut(String),
    /// No connection: refused, no such host, TLS, a malformed endpoint.
    Unreachable(String),
    /// No region to send the request to.
    NoRegion,
}

fn transport_problem<E>(err: &SdkError<E, HttpResponse>, text: &str) -> Option<Transport> {
    // The endpoint resolver says this in words only.
    if text.contains("A region must be set") {
        return Some(Transport::NoRegion);
    }
    match err {
        SdkError::TimeoutError(_) => Some(Transport::TimedOut(
            "the whole call took longer than --operation-timeout".into(),
        )),
        // "HTTP read timeout occurred after 60s": the layer under the connector's error.
        SdkError::DispatchFailure(failure) if failure.is_timeout() => Some(Transport::TimedOut(
            failure
                .as_connector_error()
                .and_then(std::error::Error::source)
                .map_or(text.to_owned(), |cause| cause.to_string()),
        )),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_user() => {
            Some(Transport::Unreachable(
                failure
                    .as_connector_error()
                    .map_or(text.to_owned(), |c| innermost(c)),
            ))
        }
        _ => None,
    }
}

/// The deepest cause's words: "Connection refused (os error 111)", "HTTP read timeout
/// occurred after 1s", without the layers of wrapping around them.
fn innermost(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn status_of<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status_of(err) == Some(404) && err.code() != Some("NoSuchBucket")
}

/// ETags compare without their quotes (S3 does not care whether `If-Match` quotes them).
fn same_etag(a: &str, b: &str) -> bool {
    a.trim_matches('"') == b.trim_matches('"')
}

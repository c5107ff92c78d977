//! A small blocking S3 client for tests: seed buckets and inspect what the binary wrote.
//!
//! It is built from explicit settings only — endpoint, path-style, dummy credentials, region —
//! and never from the AWS configuration chain, so it cannot read `~/.aws`, the environment or the
//! instance metadata service: the only address it can reach is the loopback endpoint it is given.
//! Failures the caller cannot expect panic with the SDK's whole error chain.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use tokio::runtime::Runtime;

/// Bounds every call, so a wedged server fails the test instead of hanging it.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking S3 client over `aws-sdk-s3`, with its own tokio runtime.
pub struct S3 {
    runtime: Runtime,
    client: Client,
}

impl S3 {
    /// A client for the S3-compatible server at `endpoint` (e.g. [`super::Moto::endpoint`]).
    pub fn new(endpoint: &str) -> S3 {
        super::assert_loopback_url("the test S3 client's endpoint", endpoint);
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .build();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build a tokio runtime for the test S3 client");
        S3 {
            runtime,
            client: Client::from_conf(config),
        }
    }

    /// The underlying SDK client, for calls the helpers do not cover (use with [`S3::block_on`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        self.block_on(self.client.create_bucket().bucket(bucket).send())
            .unwrap_or_else(|e| panic!("create bucket `{bucket}`: {}", DisplayErrorContext(e)));
    }

    /// Writes `body` to `bucket/key` unconditionally; returns the new ETag (quoted, as S3 sends).
    pub fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) -> String {
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send();
        let output = self
            .block_on(request)
            .unwrap_or_else(|e| panic!("put `{bucket}/{key}`: {}", DisplayErrorContext(e)));
        output.e_tag().unwrap_or_default().to_owned()
    }

    /// The bytes of `bucket/key`, or `None` if there is no such key.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            let output = match self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
            {
                Ok(output) => output,
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return None,
                Err(e) => panic!("get `{bucket}/{key}`: {}", DisplayErrorContext(e)),
            };
            let body = output.body.collect().await.unwrap_or_else(|e| {
                panic!(
                    "read the body of `{bucket}/{key}`: {}",
                    DisplayErrorContext(e)
                )
            });
            Some(body.to_vec())
        })
    }

    /// The object's metadata (size, ETag, encryption, storage class), or `None` if absent.
    pub fn head(&self, bucket: &str, key: &str) -> Option<HeadObjectOutput> {
        match self.block_on(self.client.head_object().bucket(bucket).key(key).send()) {
            Ok(output) => Some(output),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => None,
            Err(e) => panic!("head `{bucket}/{key}`: {}", DisplayErrorContext(e)),
        }
    }

    /// The size in bytes of `bucket/key`, or `None` if absent.
    pub fn head_size(&self, bucket: &str, key: &str) -> Option<u64> {
        let head = self.head(bucket, key)?;
        let size = head
            .content_length()
            .expect("HEAD answer without Content-Length");
        Some(u64::try_from(size).expect("negative Content-Length"))
    }

    /// Every key under `prefix` (all pages), sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send();
            let page = self
                .block_on(request)
                .unwrap_or_else(|e| panic!("list `{bucket}/{prefix}`: {}", DisplayErrorContext(e)));
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        keys
    }

    /// Deletes `bucket/key` (no error if it is absent, as in S3).
    pub fn delete(&self, bucket: &str, key: &str) {
        self.block_on(self.client.delete_object().bucket(bucket).key(key).send())
            .unwrap_or_else(|e| panic!("delete `{bucket}/{key}`: {}", DisplayErrorContext(e)));
    }

    /// The keys of multipart uploads started and neither completed nor aborted, sorted: a
    /// failed build must leave none.
    pub fn open_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let (mut key_marker, mut upload_marker) = (None::<String>, None::<String>);
        loop {
            let request = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send();
            let page = self.block_on(request).unwrap_or_else(|e| {
                panic!(
                    "list multipart uploads of `{bucket}`: {}",
                    DisplayErrorContext(e)
                )
            });
            keys.extend(
                page.uploads()
                    .iter()
                    .filter_map(|u| u.key().map(str::to_owned)),
            );
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        keys.sort();
        keys
    }
}

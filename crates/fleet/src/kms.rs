//! AWS KMS asymmetric signing keys: sign a small message, read the public key.
//!
//! Kept here with the other heavy SDKs so that the binary crate never compiles aws-sdk-kms.

use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

/// A failed KMS call, naming the call and the key.
#[derive(Debug, thiserror::Error)]
#[error("KMS {call} with key `{key}` failed: {detail}")]
pub struct KmsError {
    /// The call (`Sign`, `GetPublicKey`).
    pub call: &'static str,
    /// The key as given (id, ARN or `alias/…`).
    pub key: String,
    /// The SDK's words.
    pub detail: String,
}

/// An ECDSA P-256 signature and the key that made it.
#[derive(Debug, Clone)]
pub struct KmsSignature {
    /// The key's ARN, as KMS reports it.
    pub key_arn: String,
    /// The signature, DER-encoded (as KMS returns it).
    pub der: Vec<u8>,
}

/// A public key and its ARN.
#[derive(Debug, Clone)]
pub struct KmsPublicKey {
    /// The key's ARN.
    pub key_arn: String,
    /// SubjectPublicKeyInfo, DER-encoded.
    pub spki_der: Vec<u8>,
    /// KMS's key spec, e.g. `ECC_NIST_P256`.
    pub key_spec: String,
}

/// A KMS client from a loaded AWS configuration.
#[derive(Debug, Clone)]
pub struct Kms {
    client: aws_sdk_kms::Client,
}

impl Kms {
    /// A client from a loaded AWS configuration (region, credentials, timeouts).
    pub fn new(shared: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_kms::Client::new(shared),
        }
    }

    /// Signs `message` (at most 4096 bytes, KMS's limit) with ECDSA_SHA_256, MessageType RAW:
    /// KMS hashes it with SHA-256. RAW rather than DIGEST because moto, the tests' KMS,
    /// hashes a DIGEST message once more (real KMS does not): RAW means the same everywhere.
    pub async fn sign_message(&self, key: &str, message: &[u8]) -> Result<KmsSignature, KmsError> {
        let out = self
            .client
            .sign()
            .key_id(key)
            .message(Blob::new(message))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| error("Sign", key, DisplayErrorContext(e)))?;
        let der = out
            .signature
            .ok_or_else(|| error("Sign", key, "the answer has no signature"))?
            .into_inner();
        Ok(KmsSignature {
            key_arn: out.key_id.unwrap_or_else(|| key.to_owned()),
            der,
        })
    }

    /// The key's public half.
    pub async fn public_key(&self, key: &str) -> Result<KmsPublicKey, KmsError> {
        let out = self
            .client
            .get_public_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| error("GetPublicKey", key, DisplayErrorContext(e)))?;
        let spki_der = out
            .public_key
            .ok_or_else(|| error("GetPublicKey", key, "the answer has no public key"))?
            .into_inner();
        Ok(KmsPublicKey {
            key_arn: out.key_id.unwrap_or_else(|| key.to_owned()),
            spki_der,
            key_spec: out
                .key_spec
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
        })
    }
}

fn error(call: &'static str, key: &str, detail: impl std::fmt::Display) -> KmsError {
    KmsError {
        call,
        key: key.to_owned(),
        detail: detail.to_string(),
    }
}

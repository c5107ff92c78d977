//! Signed builds: the build job signs each manifest, exactly as stored; hosts install only
//! builds signed by a key they trust.
//!
//! The signature lives beside the manifest in `{artifact}-{N}.release.sig` and is one of:
//! - a minisign signature (Ed25519; `key:FILE` keys), verifiable with `minisign -V`;
//! - a small JSON envelope for AWS KMS keys (ECDSA P-256 with SHA-256):
//!   `{"format": "release-kms-ecdsa-p256-sha256", "key_id": ARN, "signature": BASE64(DER)}`,
//!   verifiable with `openssl dgst -sha256 -verify release.pub -signature sig.der MANIFEST`.
//!
//! See docs/signing.md.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _, LineEnding};
use release_fleet::kms::Kms;
use sha2::{Digest as _, Sha256};

use crate::error::ExitError;

/// The `format` of the KMS envelope.
pub(crate) const KMS_FORMAT: &str = "release-kms-ecdsa-p256-sha256";
/// KMS signs at most this many bytes with MessageType RAW.
const KMS_RAW_LIMIT: usize = 4096;

/// A signing key as `--sign` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignWith {
    /// `kms:KEY` (key id, ARN or `alias/…`).
    Kms(String),
    /// `key:FILE`: a minisign secret key file.
    File(PathBuf),
}

impl std::str::FromStr for SignWith {
    type Err = ExitError;

    fn from_str(text: &str) -> Result<Self, ExitError> {
        if let Some(key) = text.strip_prefix("kms:").filter(|k| !k.is_empty()) {
            return Ok(Self::Kms(key.to_owned()));
        }
        if let Some(file) = text.strip_prefix("key:").filter(|k| !k.is_empty()) {
            return Ok(Self::File(PathBuf::from(file)));
        }
        Err(ExitError::Usage(format!(
            "`{text}` is not a signing key: use `kms:alias/NAME` (an AWS KMS ECC_NIST_P256 \
             key) or `key:FILE` (a minisign secret key, e.g. from `minisign -G -W`)"
        )))
    }
}

/// A signature as stored: its text and the id of the key that made it.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The `.release.sig` object's body.
    pub(crate) text: String,
    /// The key id (minisign's 16 hex digits, or the KMS key's ARN).
    pub(crate) key_id: String,
}

/// Signs `manifest` (the bytes that will be stored) as build `number` of `artifact`.
pub(crate) async fn sign(
    with: &SignWith,
    aws: impl AsyncFnOnce() -> aws_config::SdkConfig,
    manifest: &[u8],
    artifact: &str,
    number: u64,
) -> Result<Signed> {
    match with {
        SignWith::File(path) => sign_minisign(path, manifest, artifact, number),
        SignWith::Kms(key) => {
            if manifest.len() > KMS_RAW_LIMIT {
                return Err(ExitError::Usage(format!(
                    "the manifest of build {number} is {} bytes, more than the {KMS_RAW_LIMIT} \
                     KMS signs: shorten its values (e.g. BRANCH)",
                    manifest.len()
                ))
                .into());
            }
            let kms = Kms::new(&aws().await);
            let signature = kms.sign_message(key, manifest).await?;
            let envelope = serde_json::json!({
                "format": KMS_FORMAT,
                "key_id": signature.key_arn,
                "signature": base64::engine::general_purpose::STANDARD.encode(&signature.der),
            });
            Ok(Signed {
                text: format!("{envelope:#}\n"),
                key_id: signature.key_arn,
            })
        }
    }
}

/// A minisign secret key file and its public key. Unencrypted keys are read with
/// `SecretKey::from_bytes`, because minisign 0.11 (`minisign -G -W`) writes them with a zeroed
/// checksum that the crate's box reader calls corrupted; signing with the public key given
/// checks the key instead (a corrupt key cannot make a signature its public half verifies).
fn read_secret(path: &Path) -> Result<(minisign::SecretKey, minisign::PublicKey), ExitError> {
    let bad = |why: String| {
        ExitError::Usage(format!(
            "`{}` is not a usable minisign secret key ({why}): make one with `minisign -G -W -s \
             FILE -p FILE.pub`, or give the password of an encrypted one in {}",
            path.display(),
            crate::env_vars::SIGN_PASSWORD
        ))
    };
    let text = fs_err::read_to_string(path).map_err(|e| {
        ExitError::Usage(format!(
            "cannot read the signing key (--sign key:FILE): {e}"
        ))
    })?;
    let line = text.lines().nth(1).unwrap_or_default().trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|e| bad(e.to_string()))?;
    let secret = if bytes.get(2..4) == Some(&[0, 0][..]) {
        minisign::SecretKey::from_bytes(&bytes)
    } else {
        let password = std::env::var(crate::env_vars::SIGN_PASSWORD).map_err(|_| {
            bad(format!(
                "it is encrypted and {} is not set",
                crate::env_vars::SIGN_PASSWORD
            ))
        })?;
        minisign::SecretKeyBox::from_string(&text).and_then(|b| b.into_secret_key(Some(password)))
    }
    .map_err(|e| bad(e.to_string()))?;
    let public = minisign::PublicKey::from_secret_key(&secret).map_err(|e| bad(e.to_string()))?;
    Ok((secret, public))
}

/// Checks a `key:FILE` key before anything is uploaded, so that a bad key costs no build
/// number and no upload (a KMS key is only known good when it signs).
pub(crate) fn preflight(with: &SignWith) -> Result<(), ExitError> {
    match with {
        SignWith::File(path) => read_secret(path).map(|_| ()),
        SignWith::Kms(_) => Ok(()),
    }
}

fn sign_minisign(path: &Path, manifest: &[u8], artifact: &str, number: u64) -> Result<Signed> {
    let (secret, public) = read_secret(path)?;
    let comment = format!("release {artifact} build {number}");
    let signature = minisign::sign(Some(&public), &secret, manifest, Some(&comment), None)
        .map_err(|e| {
            ExitError::Usage(format!(
                "`{}` cannot sign ({e}): the key is damaged; make a new one",
                path.display()
            ))
        })?;
    Ok(Signed {
        key_id: minisign_id(signature.keynum()),
        text: signature.into_string(),
    })
}

fn minisign_id(keynum: &[u8]) -> String {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:016X}", u64::from_le_bytes(bytes))
}

/// One trusted public key.
#[derive(Debug, Clone)]
enum PublicKey {
    Minisign(minisign::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// A trusted key and its id.
#[derive(Debug, Clone)]
pub(crate) struct TrustedKey {
    key: PublicKey,
    /// minisign's key id, or `sha256:` + 16 hex digits of the PEM key's DER.
    pub(crate) id: String,
}

/// The trusted keys of the flags (or their env twin), else of release.toml.
pub(crate) fn configured(
    flags: Vec<PathBuf>,
    file: &Option<Vec<PathBuf>>,
) -> Result<Vec<TrustedKey>, ExitError> {
    if flags.is_empty() {
        load_trusted(file.as_deref().unwrap_or_default())
    } else {
        load_trusted(&flags)
    }
}

/// Reads trusted keys: minisign public key files or PEM public keys (from `release key export`).
pub(crate) fn load_trusted(files: &[PathBuf]) -> Result<Vec<TrustedKey>, ExitError> {
    files.iter().map(|file| load_one(file)).collect()
}

fn load_one(file: &Path) -> Result<TrustedKey, ExitError> {
    let text = fs_err::read_to_string(file)
        .map_err(|e| ExitError::Usage(format!("cannot read the trusted key: {e}")))?;
    let bad = |why: String| {
        ExitError::Usage(format!(
            "`{}` is not a trusted key ({why}): give a minisign public key or the PEM from \
             `release key export`",
            file.display()
        ))
    };
    let key = if text.contains("-----BEGIN PUBLIC KEY-----") {
        let key = p256::ecdsa::VerifyingKey::from_public_key_pem(&text)
            .map_err(|e| bad(format!("not an ECDSA P-256 public key: {e}")))?;
        let der = key.to_public_key_der().map_err(|e| bad(e.to_string()))?;
        let id = format!("sha256:{}", &hex(&Sha256::digest(der.as_bytes()))[..16]);
        return Ok(TrustedKey {
            key: PublicKey::P256(key),
            id,
        });
    } else if text.trim_start().starts_with("untrusted comment:") {
        minisign::PublicKeyBox::from_string(&text).and_then(|b| b.into_public_key())
    } else {
        minisign::PublicKey::from_base64(text.trim())
    }
    .map_err(|e| bad(e.to_string()))?;
    Ok(TrustedKey {
        id: minisign_id(key.keynum()),
        key: PublicKey::Minisign(key),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The signature object could not be read as a signature.
    #[error("the signature is not readable ({0})")]
    Garbled(String),
    /// No trusted key has the signature's key id.
    #[error("it is signed by key {0}, which is not among the trusted keys")]
    Untrusted(String),
    /// The key is trusted, the signature does not match the manifest.
    #[error("the signature by key {0} does not match the manifest ({1})")]
    Invalid(String, String),
}

/// Checks `signature` over `manifest`; the id of the trusted key that signed it.
pub(crate) fn verify(
    trusted: &[TrustedKey],
    manifest: &[u8],
    signature: &[u8],
) -> Result<String, Refusal> {
    let text = std::str::from_utf8(signature).map_err(|e| Refusal::Garbled(e.to_string()))?;
    if text.trim_start().starts_with('{') {
        return verify_kms(trusted, manifest, text);
    }
    let sig =
        minisign::SignatureBox::from_string(text).map_err(|e| Refusal::Garbled(e.to_string()))?;
    let id = minisign_id(sig.keynum());
    let key = trusted
        .iter()
        .find_map(|t| match &t.key {
            PublicKey::Minisign(k) if minisign_id(k.keynum()) == id => Some(k),
            _ => None,
        })
        .ok_or_else(|| Refusal::Untrusted(id.clone()))?;
    minisign::verify(
        key,
        &sig,
        std::io::Cursor::new(manifest),
        true,
        false,
        false,
    )
    .map_err(|e| Refusal::Invalid(id.clone(), e.to_string()))?;
    Ok(id)
}

#[derive(serde::Deserialize)]
struct Envelope {
    format: String,
    key_id: String,
    signature: String,
}

fn verify_kms(trusted: &[TrustedKey], manifest: &[u8], text: &str) -> Result<String, Refusal> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| Refusal::Garbled(e.to_string()))?;
    if envelope.format != KMS_FORMAT {
        return Err(Refusal::Garbled(format!(
            "unknown format `{}`",
            envelope.format
        )));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(envelope.signature.trim())
        .map_err(|e| Refusal::Garbled(e.to_string()))?;
    let signature = p256::ecdsa::Signature::from_der(&der)
        .map_err(|e| Refusal::Garbled(format!("not a DER ECDSA signature: {e}")))?;
    // A PEM key does not carry its ARN: every trusted P-256 key is tried.
    for t in trusted {
        if let PublicKey::P256(key) = &t.key
            && key.verify(manifest, &signature).is_ok()
        {
            return Ok(format!("{} ({})", envelope.key_id, t.id));
        }
    }
    Err(Refusal::Untrusted(format!(
        "{} (or the signature does not match the manifest)",
        envelope.key_id
    )))
}

/// `release key export`: the public key of a signing key, as trusted keys are given.
pub(crate) async fn export(
    with: &SignWith,
    aws: impl AsyncFnOnce() -> aws_config::SdkConfig,
) -> Result<String> {
    match with {
        SignWith::File(path) => {
            let (_, public) = read_secret(path)?;
            Ok(public.to_box()?.into_string())
        }
        SignWith::Kms(key) => {
            let kms = Kms::new(&aws().await);
            let public = kms.public_key(key).await?;
            let parsed = p256::PublicKey::from_public_key_der(&public.spki_der).map_err(|e| {
                ExitError::Usage(format!(
                    "KMS key `{key}` ({}) is not an ECC_NIST_P256 key ({e}): create one with \
                     --key-spec ECC_NIST_P256 --key-usage SIGN_VERIFY",
                    public.key_spec
                ))
            })?;
            Ok(parsed
                .to_public_key_pem(LineEnding::LF)
                .context("encoding the public key as PEM")?)
        }
    }
}

/// The build's manifest and signature as stored, checked against the trusted keys: the build
/// as its signed manifest describes it, and the signing key's id. Anything else is an input
/// error (exit 2) naming the build, the key ids and the fix; only the manifest and the
/// signature are read.
pub(crate) async fn verified(
    store: &crate::bucket::store::Store,
    layout: &crate::bucket::layout::Layout,
    number: u64,
    trusted: &[TrustedKey],
) -> Result<(crate::bucket::resolve::Build, String)> {
    let ids: Vec<&str> = trusted.iter().map(|t| t.id.as_str()).collect();
    let refuse = |why: String| -> anyhow::Error {
        ExitError::Usage(format!(
            "build {number} of {} is not trusted: {why}; the trusted keys are {}; nothing was \
             downloaded, switched or promoted: use a build signed by one of them (`release \
             build --sign`), or add its signer's public key to trusted_keys",
            layout.artifact(),
            ids.join(", ")
        ))
        .into()
    };
    let manifest_key = layout.manifest(number);
    let signature_key = layout.signature(number);
    let Some(manifest) = store.get(&manifest_key).await? else {
        return Err(refuse(format!(
            "it has no manifest `{}` to check a signature over",
            store.url(&manifest_key)
        )));
    };
    let Some(signature) = store.get(&signature_key).await? else {
        return Err(refuse(format!(
            "it has no signature `{}`",
            store.url(&signature_key)
        )));
    };
    let key_id = verify(trusted, &manifest.body, &signature.body)
        .map_err(|why| refuse(format!("`{}`: {why}", store.url(&signature_key))))?;
    let url = store.url(&manifest_key);
    let parsed = crate::manifest::Manifest::parse_build(&manifest.body)
        .with_context(|| format!("`{url}` is not a valid manifest"))?;
    let build = crate::bucket::resolve::Build::checked(
        layout,
        number,
        parsed,
        crate::bucket::resolve::Origin::Manifest,
        &url,
    )?;
    Ok((build, key_id))
}

/// The key id a signature object names, unchecked (for `show`): minisign's key id or the KMS
/// key's ARN; `None` if it is not a signature.
pub(crate) fn named_signer(signature: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(signature).ok()?;
    if text.trim_start().starts_with('{') {
        let envelope: Envelope = serde_json::from_str(text).ok()?;
        return Some(envelope.key_id);
    }
    let sig = minisign::SignatureBox::from_string(text).ok()?;
    Some(minisign_id(sig.keynum()))
}

/// The key id build `number`'s signature object names, if it has a readable one (for history
/// records; unchecked here, checked before a promotion when trusted keys are configured). A
/// failure to read it counts as none: the record is still written.
pub(crate) async fn signer_of(
    store: &crate::bucket::store::Store,
    layout: &crate::bucket::layout::Layout,
    number: u64,
) -> Option<String> {
    let object = store.get(&layout.signature(number)).await.ok()??;
    named_signer(&object.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_files(dir: &Path) -> (PathBuf, PathBuf) {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        let secret = dir.join("k.key");
        let public = dir.join("k.pub");
        let sk_box = pair.sk.to_box(None).unwrap().into_string();
        fs_err::write(&secret, sk_box).unwrap();
        fs_err::write(&public, pair.pk.to_box().unwrap().into_string()).unwrap();
        (secret, public)
    }

    #[test]
    fn parses_signing_keys() {
        assert_eq!(
            "kms:alias/x".parse::<SignWith>().unwrap(),
            SignWith::Kms("alias/x".into())
        );
        assert_eq!(
            "key:/k".parse::<SignWith>().unwrap(),
            SignWith::File("/k".into())
        );
        for bad in ["kms:", "key:", "alias/x", "gpg:x", ""] {
            assert!(bad.parse::<SignWith>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_minisign_signature_verifies_only_over_the_bytes_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = key_files(dir.path());
        let manifest = b"MODULE=web\nVERSION=3\n";
        let signed = sign_minisign(&secret, manifest, "web", 3).unwrap();
        let trusted = load_trusted(&[public]).unwrap();
        assert_eq!(
            verify(&trusted, manifest, signed.text.as_bytes()).unwrap(),
            signed.key_id
        );
        assert_eq!(named_signer(signed.text.as_bytes()), Some(signed.key_id));
        let changed = b"MODULE=web\nVERSION=4\n";
        assert!(matches!(
            verify(&trusted, changed, signed.text.as_bytes()),
            Err(Refusal::Invalid(..))
        ));
        let half = &signed.text.as_bytes()[..signed.text.len() / 2];
        assert!(matches!(
            verify(&trusted, manifest, half),
            Err(Refusal::Garbled(_))
        ));
        assert!(matches!(
            verify(&[], manifest, signed.text.as_bytes()),
            Err(Refusal::Untrusted(_))
        ));
    }

    #[test]
    fn a_kms_envelope_verifies_against_a_pem_key() {
        use p256::ecdsa::signature::Signer as _;
        let dir = tempfile::tempdir().unwrap();
        let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let file = dir.path().join("k.pem");
        fs_err::write(&file, pem).unwrap();
        let trusted = load_trusted(&[file]).unwrap();
        let manifest = b"MODULE=web\nVERSION=3\n";
        let signature: p256::ecdsa::Signature = signing.sign(manifest);
        let envelope = serde_json::json!({
            "format": KMS_FORMAT,
            "key_id": "arn:aws:kms:r:1:key/k",
            "signature": base64::engine::general_purpose::STANDARD
                .encode(signature.to_der().as_bytes()),
        })
        .to_string();
        let id = verify(&trusted, manifest, envelope.as_bytes()).unwrap();
        assert!(id.starts_with("arn:aws:kms:r:1:key/k (sha256:"), "{id}");
        assert!(verify(&trusted, b"MODULE=web\nVERSION=4\n", envelope.as_bytes()).is_err());
    }
}

//! Keys in a hardware security module, through the module's PKCS#11 library (DESIGN §3). A
//! [`Token`], logged in with its user PIN, finds or makes Ed25519 keys by label; the
//! [`SigningKey`]s it hands out sign inside the module, messages and TLS handshakes alike, and
//! cannot be exported. The PIN is handed to the module and kept nowhere else.
//!
//! A PKCS#11 library is initialised once per process, so every [`Token`] of one library shares
//! it. Each token has one session, and its signatures are made one at a time.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::{Error, PublicKey, SigningKey};

/// DER of the Ed25519 curve's object identifier (1.3.101.112), as `CKA_EC_PARAMS`.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// A token of a PKCS#11 module, logged in as its user. Clones share the session.
#[derive(Clone)]
pub struct Token {
    inner: Arc<TokenInner>,
}

struct TokenInner {
    module: PathBuf,
    label: String,
    session: Mutex<Session>,
    /// Keeps the library loaded as long as the session lives.
    _library: Arc<Pkcs11>,
}

fn module_error(what: &str, e: CkError) -> Error {
    Error::Module(format!("{what}: {e}"))
}

/// The library at `path`, loaded and initialised once per process.
fn library(path: &Path) -> Result<Arc<Pkcs11>, Error> {
    static LIBRARIES: OnceLock<Mutex<HashMap<PathBuf, Arc<Pkcs11>>>> = OnceLock::new();
    let mut libraries = LIBRARIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(library) = libraries.get(path) {
        return Ok(Arc::clone(library));
    }
    let library =
        Pkcs11::new(path).map_err(|e| module_error(&format!("loading {}", path.display()), e))?;
    match library.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(module_error(&format!("initialising {}", path.display()), e)),
    }
    let library = Arc::new(library);
    libraries.insert(path.to_owned(), Arc::clone(&library));
    Ok(library)
}

impl Token {
    /// Opens the token labelled `token_label` in the PKCS#11 library at `module` and logs in
    /// with the user `pin`. (PKCS#11 keeps one login per process and token: once this process is
    /// logged in, another `open` of the token does not check the PIN again.)
    pub fn open(module: &Path, token_label: &str, pin: &str) -> Result<Self, Error> {
        let library = library(module)?;
        let slots = library
            .get_slots_with_token()
            .map_err(|e| module_error("listing slots", e))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                library
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == token_label)
            })
            .ok_or_else(|| {
                Error::Module(format!(
                    "no token labelled {token_label:?} in {}",
                    module.display()
                ))
            })?;
        let session = library
            .open_rw_session(slot)
            .map_err(|e| module_error("opening a session", e))?;
        // Logging in is per application and token: another `Token` of this process may have.
        match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(module_error(&format!("logging in to {token_label:?}"), e)),
        }
        Ok(Token {
            inner: Arc::new(TokenInner {
                module: module.to_owned(),
                label: token_label.to_owned(),
                session: Mutex::new(session),
                _library: library,
            }),
        })
    }

    pub fn label(&self) -> &str {
        &self.inner.label
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The Ed25519 key labelled `label`: its private key signs, its public key (an object with
    /// the same label) says which key it is.
    pub fn key(&self, label: &str) -> Result<SigningKey, Error> {
        self.find(label)?.ok_or_else(|| {
            Error::Module(format!(
                "no Ed25519 key labelled {label:?} in token {:?}",
                self.label()
            ))
        })
    }

    /// The key labelled `label`, made inside the token if there is none yet. Says whether it
    /// was made.
    pub fn key_or_generate(&self, label: &str) -> Result<(SigningKey, bool), Error> {
        match self.find(label)? {
            Some(key) => Ok((key, false)),
            None => Ok((self.generate(label)?, true)),
        }
    }

    /// Makes an Ed25519 key pair inside the token, labelled `label`: the private key sensitive
    /// and not extractable. Refuses a label in use.
    pub fn generate(&self, label: &str) -> Result<SigningKey, Error> {
        if self.find(label)?.is_some() {
            return Err(Error::Module(format!(
                "token {:?} already holds a key labelled {label:?}",
                self.label()
            )));
        }
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        self.session()
            .generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &public_template,
                &private_template,
            )
            .map_err(|e| module_error(&format!("making key {label:?}"), e))?;
        self.key(label)
    }

    /// Gives the key labelled `from` (both its objects) the label `to`. Refuses a label in use.
    pub fn relabel(&self, from: &str, to: &str) -> Result<(), Error> {
        if self.find(to)?.is_some() {
            return Err(Error::Module(format!(
                "token {:?} already holds a key labelled {to:?}",
                self.label()
            )));
        }
        let session = self.session();
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let objects = find_objects(&session, class, from)?;
            for object in objects {
                session
                    .update_attributes(object, &[Attribute::Label(to.as_bytes().to_vec())])
                    .map_err(|e| module_error(&format!("relabelling {from:?}"), e))?;
            }
        }
        Ok(())
    }

    /// The keys labelled `label` or `label/…` (labels as keys made by rotation get them), by
    /// label.
    pub fn keys_under(&self, label: &str) -> Result<Vec<(String, SigningKey)>, Error> {
        let labels = {
            let session = self.session();
            let objects = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::EC_EDWARDS),
                ])
                .map_err(|e| module_error("listing keys", e))?;
            let mut labels = Vec::new();
            for object in objects {
                let attributes = session
                    .get_attributes(object, &[AttributeType::Label])
                    .map_err(|e| module_error("reading a key's label", e))?;
                if let Some(Attribute::Label(bytes)) = attributes.into_iter().next()
                    && let Ok(text) = String::from_utf8(bytes)
                    && (text == label
                        || text
                            .strip_prefix(label)
                            .is_some_and(|rest| rest.starts_with('/')))
                {
                    labels.push(text);
                }
            }
            labels
        };
        let mut keys = Vec::with_capacity(labels.len());
        for l in labels {
            keys.push((l.clone(), self.key(&l)?));
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keys)
    }

    /// Destroys the key labelled `label` (both its objects), if there is one.
    pub fn destroy(&self, label: &str) -> Result<(), Error> {
        let session = self.session();
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            for object in find_objects(&session, class, label)? {
                session
                    .destroy_object(object)
                    .map_err(|e| module_error(&format!("destroying key {label:?}"), e))?;
            }
        }
        Ok(())
    }

    /// The key labelled `label`, if the token holds one.
    pub fn find(&self, label: &str) -> Result<Option<SigningKey>, Error> {
        let session = self.session();
        let private = find_objects(&session, ObjectClass::PRIVATE_KEY, label)?;
        let public = find_objects(&session, ObjectClass::PUBLIC_KEY, label)?;
        let (handle, public) = match (private.as_slice(), public.as_slice()) {
            ([], _) => return Ok(None),
            ([handle], [public]) => (*handle, *public),
            ([_], []) => {
                return Err(Error::Module(format!(
                    "key {label:?} has no public key object with the same label"
                )));
            }
            _ => {
                return Err(Error::Module(format!(
                    "token {:?} holds several keys labelled {label:?}",
                    self.label()
                )));
            }
        };
        let point = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| module_error(&format!("reading key {label:?}"), e))?;
        let Some(Attribute::EcPoint(point)) = point.into_iter().next() else {
            return Err(Error::Module(format!("key {label:?} has no public point")));
        };
        drop(session);
        let public = PublicKey::from_bytes(ec_point(&point))?;
        Ok(Some(SigningKey::module(ModuleKey {
            token: self.clone(),
            handle,
            label: label.to_owned(),
            public,
        })))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("module", &self.inner.module)
            .field("label", &self.inner.label)
            .finish_non_exhaustive()
    }
}

fn find_objects(
    session: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Vec<ObjectHandle>, Error> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| module_error(&format!("finding key {label:?}"), e))
}

/// `CKA_EC_POINT` is the DER OCTET STRING of the 32-byte key; some modules give the bytes bare.
fn ec_point(value: &[u8]) -> &[u8] {
    match value {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        _ => value,
    }
}

/// A private key inside a token, and its public key.
pub(crate) struct ModuleKey {
    token: Token,
    handle: ObjectHandle,
    label: String,
    pub(crate) public: PublicKey,
}

impl ModuleKey {
    /// Plain Ed25519 over `bytes`, made inside the module.
    pub(crate) fn sign(&self, bytes: &[u8]) -> Result<[u8; 64], Error> {
        let signature = self
            .token
            .session()
            .sign(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                self.handle,
                bytes,
            )
            .map_err(|e| module_error(&format!("signing with key {:?}", self.label), e))?;
        signature.try_into().map_err(|s: Vec<u8>| {
            Error::Module(format!(
                "key {:?} made a signature of {} bytes, not 64",
                self.label,
                s.len()
            ))
        })
    }

    /// "token label / key label", for messages.
    pub(crate) fn describe(&self) -> String {
        format!("token {:?}, key {:?}", self.token.label(), self.label)
    }
}

/// Initialises the token in the first free slot of the library at `module`: labelled `label`,
/// with the security officer PIN `so_pin` and the user PIN `pin`. What `softhsm2-util
/// --init-token --free` does, for tests and for modules without their own tool.
pub fn init_token(module: &Path, label: &str, so_pin: &str, pin: &str) -> Result<(), Error> {
    let library = library(module)?;
    let slots = library
        .get_slots_with_token()
        .map_err(|e| module_error("listing slots", e))?;
    let free = slots
        .into_iter()
        .find(|slot| {
            library
                .get_token_info(*slot)
                .is_ok_and(|info| !info.token_initialized())
        })
        .ok_or_else(|| Error::Module(format!("{} has no free slot", module.display())))?;
    let so_pin = AuthPin::new(so_pin.into());
    library
        .init_token(free, &so_pin, label)
        .map_err(|e| module_error(&format!("initialising token {label:?}"), e))?;
    // The module may give the new token another slot id: find it by its label.
    let slot = library
        .get_slots_with_token()
        .map_err(|e| module_error("listing slots", e))?
        .into_iter()
        .find(|slot| {
            library
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == label)
        })
        .ok_or_else(|| Error::Module(format!("token {label:?} vanished after initialising")))?;
    let session = library
        .open_rw_session(slot)
        .map_err(|e| module_error("opening a session", e))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(|e| module_error("logging in as security officer", e))?;
    session
        .init_pin(&AuthPin::new(pin.into()))
        .map_err(|e| module_error("setting the user PIN", e))?;
    session
        .logout()
        .map_err(|e| module_error("logging out", e))?;
    Ok(())
}

/// SoftHSM2 for tests: Debian's module (`scripts/install-softhsm` installs it), with its tokens
/// in a directory of the test's own.
pub mod testing {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Where Debian's `softhsm2` package puts the module.
    pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

    /// Marks the child process [`in_own_softhsm`] starts.
    const CHILD: &str = "XROAD_RS_SOFTHSM_CHILD";

    /// SoftHSM2 reads its configuration (`SOFTHSM2_CONF`, which says where tokens live) once,
    /// when a process first loads it, and a test may not change its own environment. So the test
    /// named `test` (its full path, as `cargo test` lists it) runs again in a child process whose
    /// SoftHSM2 keeps its tokens in a new directory; the parent waits, panics if the child
    /// failed, and gets `None`. In the child this returns the module's path.
    ///
    /// Panics when the module is not installed (run `scripts/install-softhsm`).
    pub fn in_own_softhsm(test: &str) -> Option<PathBuf> {
        in_own_softhsm_with(test, &[])
    }

    /// [`in_own_softhsm`], with `env` set in the child's environment too.
    pub fn in_own_softhsm_with(test: &str, env: &[(&str, &str)]) -> Option<PathBuf> {
        let module = Path::new(SOFTHSM_MODULE);
        assert!(
            module.exists(),
            "{SOFTHSM_MODULE} is missing: run scripts/install-softhsm (Debian's softhsm2)"
        );
        if std::env::var_os(CHILD).is_some() {
            return Some(module.to_owned());
        }
        let dir = std::env::temp_dir().join(format!(
            "xroad-rs-softhsm-{}-{}",
            std::process::id(),
            test.replace("::", "-")
        ));
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("a directory for the test's tokens");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("the test's softhsm2.conf");
        let status = Command::new(std::env::current_exe().expect("the test binary"))
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("SOFTHSM2_CONF", &conf)
            .envs(env.iter().copied())
            .status()
            .expect("the test binary runs again");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(status.success(), "{test} failed with its own SoftHSM2");
        None
    }
}

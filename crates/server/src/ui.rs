//! The web UI ([`nhiwatch_ui`]) on the server's own port, when the server keeps an evidence
//! store: its pages read the server's store handle (reads run beside the writes) and check the
//! server's API tokens, `read` to look and `admin` to acknowledge findings or mark them benign.

use std::sync::Arc;
use std::time::Instant;

use nhiwatch_policy::Policy;
use nhiwatch_store::Store;
use nhiwatch_ui::{Authenticate, BenignHook, Denied, Need, Settings};

use crate::auth::{Scope, Tokens};
use crate::{Config, ServerError};

/// The UI's routes over `store`, authenticated as the API is.
/// A benign mark teaches the engine through `benign` ([`crate::benign`]).
pub(crate) fn router(
    config: &Config,
    store: Arc<Store>,
    benign: BenignHook,
) -> Result<axum::Router, ServerError> {
    let auth = (!config.no_auth).then(|| {
        let tokens = Tokens::new(&config.tokens);
        let check: Authenticate = Arc::new(move |token: &str, need: Need| {
            let principal = tokens.verify(token).ok_or(Denied::Invalid)?;
            let scope = match need {
                Need::Read => Scope::Read,
                Need::Triage => Scope::Admin,
            };
            if !principal.allows(scope) {
                return Err(Denied::Forbidden);
            }
            principal
                .admit(Instant::now())
                .map_err(|_| Denied::RateLimited)?;
            Ok(principal.name.clone())
        });
        check
    });
    let policy = config
        .policy
        .as_deref()
        .map(|path| Policy::load(path).map_err(|e| ServerError::Policy(e.to_string())))
        .transpose()?
        .map(Arc::new);
    nhiwatch_ui::router(Settings {
        store,
        policy,
        auth,
        tls: config.tls.is_some(),
        benign: Some(benign),
    })
    .map_err(|e| ServerError::Io(e.to_string()))
}

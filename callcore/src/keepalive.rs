//! Keep-alives to agent phones behind NAT: an OPTIONS every interval (the registrar
//! says whose are due), so the phone answers and its router keeps the way in open.
//! Sent without a transaction: a lost one is not retransmitted (the next comes one
//! interval later) and the answer is dropped as a stray; a phone that does not
//! answer stays registered until its binding expires.

use sip::message::{Method, RequestBuilder};
use sip::registrar::Binding;
use tracing::trace;

use crate::control::Core;
use crate::pii::mask_addr;

impl Core {
    /// Sends the due keep-alive to one registered phone.
    pub(crate) fn send_keepalive(&mut self, binding: &Binding) {
        let Some(local) = self.local_for(binding.target.transport) else {
            return;
        };
        let advertise = self.config.advertise;
        let options = RequestBuilder::new(Method::Options, &binding.contact)
            .via(local.transport, local.sent_by, &self.ids.branch())
            .max_forwards(70)
            .from(&format!(
                "<sip:switchboard@{advertise}>;tag={}",
                self.ids.tag()
            ))
            .to(&format!("<{}>", binding.contact))
            .call_id(&self.ids.call_id())
            .cseq(1)
            .build();
        trace!(agent = %binding.user, target = %mask_addr(binding.target.addr), "NAT keep-alive");
        self.send_stateless(binding.target, options);
    }
}

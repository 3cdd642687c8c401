//! The widget's own words in the languages it speaks (the answers come in whatever language
//! the agents write). The widget's `language` setting picks one; `auto` takes the visitor's
//! browser language; anything else falls back to English.

pub struct Text {
    /// The `lang` of the frame's page.
    pub code: &'static str,
    pub you: &'static str,
    pub assistant: &'static str,
    pub team: &'static str,
    pub typing: &'static str,
    pub sources: &'static str,
    pub helpful: &'static str,
    pub not_helpful: &'static str,
    pub details_intro: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    pub start_chatting: &'static str,
    pub rate_conversation: &'static str,
    /// Around the score: "Thank you! You rated this conversation " 4 " of 5."
    pub rated: &'static str,
    pub rated_after: &'static str,
    pub of_five: &'static str,
    pub how_was_it: &'static str,
    pub getting_person: &'static str,
    pub person_joined: &'static str,
    pub new: &'static str,
    pub new_title: &'static str,
    pub rate: &'static str,
    pub close: &'static str,
    pub conversation: &'static str,
    pub your_message: &'static str,
    pub placeholder: &'static str,
    pub send: &'static str,
    /// Before the seconds: "… Please wait " 30 " s."
    pub busy: &'static str,
    pub signed_out: &'static str,
    pub unavailable: &'static str,
    pub refused: &'static str,
}

const EN: Text = Text {
    code: "en",
    you: "You",
    assistant: "Assistant",
    team: "Team",
    typing: "Typing",
    sources: "Sources",
    helpful: "Helpful",
    not_helpful: "Not helpful",
    details_intro: "Before we start, tell us who you are.",
    name: "Name",
    email: "Email",
    start_chatting: "Start chatting",
    rate_conversation: "Rate this conversation",
    rated: "Thank you! You rated this conversation ",
    rated_after: " of 5.",
    of_five: " of 5",
    how_was_it: "How was this conversation?",
    getting_person: "We are getting a person from our team for you.",
    person_joined: "A person from our team has joined.",
    new: "New",
    new_title: "Start a new conversation",
    rate: "Rate",
    close: "Close chat",
    conversation: "Conversation",
    your_message: "Your message",
    placeholder: "Write a message…",
    send: "Send",
    busy: "You are sending messages quickly. Please wait ",
    signed_out: "Your chat session ended. Reload the page to start again.",
    unavailable: "We cannot reach the chat service right now. Please try again in a moment.",
    refused: "The request was refused.",
};

const DE: Text = Text {
    code: "de",
    you: "Sie",
    assistant: "Assistent",
    team: "Team",
    typing: "Schreibt",
    sources: "Quellen",
    helpful: "Hilfreich",
    not_helpful: "Nicht hilfreich",
    details_intro: "Bevor es losgeht: Wie heißen Sie?",
    name: "Name",
    email: "E-Mail",
    start_chatting: "Chat beginnen",
    rate_conversation: "Gespräch bewerten",
    rated: "Danke! Sie haben dieses Gespräch mit ",
    rated_after: " von 5 bewertet.",
    of_five: " von 5",
    how_was_it: "Wie war dieses Gespräch?",
    getting_person: "Wir holen jemanden aus unserem Team für Sie.",
    person_joined: "Jemand aus unserem Team ist jetzt da.",
    new: "Neu",
    new_title: "Neues Gespräch beginnen",
    rate: "Bewerten",
    close: "Chat schließen",
    conversation: "Gespräch",
    your_message: "Ihre Nachricht",
    placeholder: "Nachricht schreiben…",
    send: "Senden",
    busy: "Sie senden sehr schnell. Bitte warten Sie ",
    signed_out: "Ihre Chat-Sitzung ist beendet. Laden Sie die Seite neu, um neu zu beginnen.",
    unavailable: "Der Chat ist gerade nicht erreichbar. Bitte versuchen Sie es gleich noch einmal.",
    refused: "Die Anfrage wurde abgelehnt.",
};

const FR: Text = Text {
    code: "fr",
    you: "Vous",
    assistant: "Assistant",
    team: "Équipe",
    typing: "En train d’écrire",
    sources: "Sources",
    helpful: "Utile",
    not_helpful: "Pas utile",
    details_intro: "Avant de commencer, dites-nous qui vous êtes.",
    name: "Nom",
    email: "E-mail",
    start_chatting: "Commencer",
    rate_conversation: "Évaluer cette conversation",
    rated: "Merci ! Vous avez noté cette conversation ",
    rated_after: " sur 5.",
    of_five: " sur 5",
    how_was_it: "Comment s’est passée cette conversation ?",
    getting_person: "Nous faisons venir une personne de notre équipe.",
    person_joined: "Une personne de notre équipe vous a rejoint.",
    new: "Nouvelle",
    new_title: "Commencer une nouvelle conversation",
    rate: "Évaluer",
    close: "Fermer le chat",
    conversation: "Conversation",
    your_message: "Votre message",
    placeholder: "Écrivez un message…",
    send: "Envoyer",
    busy: "Vous envoyez des messages très vite. Veuillez patienter ",
    signed_out: "Votre session de chat est terminée. Rechargez la page pour recommencer.",
    unavailable: "Le chat est injoignable pour le moment. Réessayez dans un instant.",
    refused: "La demande a été refusée.",
};

const ES: Text = Text {
    code: "es",
    you: "Usted",
    assistant: "Asistente",
    team: "Equipo",
    typing: "Escribiendo",
    sources: "Fuentes",
    helpful: "Útil",
    not_helpful: "No es útil",
    details_intro: "Antes de empezar, díganos quién es.",
    name: "Nombre",
    email: "Correo electrónico",
    start_chatting: "Empezar a chatear",
    rate_conversation: "Valorar esta conversación",
    rated: "¡Gracias! Ha valorado esta conversación con ",
    rated_after: " de 5.",
    of_five: " de 5",
    how_was_it: "¿Qué tal ha ido esta conversación?",
    getting_person: "Estamos buscando a una persona de nuestro equipo.",
    person_joined: "Una persona de nuestro equipo se ha unido.",
    new: "Nueva",
    new_title: "Empezar una conversación nueva",
    rate: "Valorar",
    close: "Cerrar el chat",
    conversation: "Conversación",
    your_message: "Su mensaje",
    placeholder: "Escriba un mensaje…",
    send: "Enviar",
    busy: "Está enviando mensajes muy rápido. Espere ",
    signed_out: "Su sesión de chat ha terminado. Recargue la página para empezar de nuevo.",
    unavailable: "No podemos conectar con el chat ahora. Inténtelo de nuevo en un momento.",
    refused: "La solicitud fue rechazada.",
};

/// The words for the frame page's `lang` (the widget's setting, which the server writes), or,
/// without one (`auto`), for the browser's language, which then becomes the page's.
pub fn chosen() -> &'static Text {
    let root = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element());
    let set = root.as_ref().and_then(|r| r.get_attribute("lang"));
    let t = match &set {
        Some(code) => for_language(code),
        None => for_language(&browser_language()),
    };
    if let (None, Some(root)) = (set, root) {
        let _ = root.set_attribute("lang", t.code);
    }
    t
}

/// The words for `code` (`de`, `de-AT`, …).
fn for_language(code: &str) -> &'static Text {
    match code
        .get(..2)
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "de" => &DE,
        "fr" => &FR,
        "es" => &ES,
        _ => &EN,
    }
}

/// `navigator.language`, or nothing.
fn browser_language() -> String {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &"navigator".into()).ok())
        .and_then(|n| js_sys::Reflect::get(&n, &"language".into()).ok())
        .and_then(|l| l.as_string())
        .unwrap_or_default()
}

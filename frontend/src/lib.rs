//! The WASM entry point: hydrate the server-rendered console and nothing else. Lazily: the
//! page's own code is a chunk of its own (`cargo leptos --split`), fetched before hydrating it.

use leptos::tachys::dom::body;

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    wasm_bindgen_futures::spawn_local(async {
        leptos::mount::hydrate_from_async(body(), app::App)
            .await
            .forget();
        // A marker tests and tools can wait for: every part of the page, the lazily loaded
        // route included, is live (an effect in the app would run before the route's chunk is in).
        let _ = body().set_attribute("data-hydrated", "true");
    });
}

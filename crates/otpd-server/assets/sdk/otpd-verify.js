/* <otpd-verify>: a drop-in sign-in component for otpd (docs/sign-in-component.md).
 *
 * Asks for a phone number (country picker, formatting and validation as you type with
 * libphonenumber-js), starts a verification through the page's own backend (`start-url`;
 * never an API key in the page), shows a code field (autocomplete="one-time-code", and the
 * WebOTP API where the browser has it), a resend countdown, otpd's errors in plain words,
 * and tells the page how it ended with the `verified` and `failed` events.
 *
 * otpd serves it at /sdk/otpd-verify.js (and /sdk/otpd-verify@VERSION.js), bundled with
 * libphonenumber-js, which the bundle passes in as `libphonenumber`: no other dependency.
 */
(function (libphonenumber) {
  "use strict";

  var VERSION = "1.0.0";

  /** Every text the component shows, in the languages otpd's templates ship. */
  var TEXT = {
    en: {
      usePasskey: "Use a passkey", passkeyWaiting: "Waiting for your passkey…",
      passkeyCancelled: "The passkey was not used. Try again, or use a code.",
      passkeyRefused: "That passkey was not accepted. Try again, or use a code.",
      country: "Country", phone: "Phone number", send: "Send code", code: "Code",
      verify: "Verify", change: "Use another number", resend: "Send a new code",
      resendIn: "Send a new code in {s} s", sending: "Sending…", checking: "Checking…",
      sent: "We sent a code to {to}. Enter it below.", verified: "Verified.",
      wrong: "That code is not right. {n} tries left.", numberInvalid: "Enter a valid phone number for the country chosen.",
      codeInvalid: "Enter the code from the message: digits only.",
      network: "Cannot reach the server. Check your connection and try again.",
      invalid_phone_number: "That phone number is not valid.",
      invalid_request: "Something in the request was not accepted. Check the number and try again.",
      unsupported_channel: "Codes cannot be sent this way. Try another number.",
      not_found: "No code is waiting for this number. Send a new one.",
      verification_not_pending: "This code can no longer be used. Send a new one.",
      expired: "The code has expired. Send a new one.",
      max_attempts_reached: "Too many wrong codes. Send a new code, or wait and try again.",
      rate_limited: "Too many attempts. Wait a moment, then try again.",
      geo_blocked: "Codes cannot be sent to numbers in this country.",
      fraud_blocked: "This request was refused to protect the service. Try again later.",
      number_type_blocked: "Codes cannot be sent to this kind of number (a landline, say). Use a mobile number.",
      budget_exceeded: "The service cannot send codes right now. Try again later.",
      delivery_unavailable: "The code could not be sent right now. Try again later.",
      unauthorized: "The service is not set up correctly. Contact its support.",
      forbidden: "The service is not set up correctly. Contact its support.",
      idempotency_conflict: "This request was already made. Try again.",
      internal: "Something went wrong. Try again later."
    },
    fr: {
      usePasskey: "Utiliser une clé d’accès", passkeyWaiting: "En attente de votre clé d’accès…",
      passkeyCancelled: "La clé d’accès n’a pas été utilisée. Réessayez, ou utilisez un code.",
      passkeyRefused: "Cette clé d’accès n’a pas été acceptée. Réessayez, ou utilisez un code.",
      country: "Pays", phone: "Numéro de téléphone", send: "Envoyer le code", code: "Code",
      verify: "Vérifier", change: "Utiliser un autre numéro", resend: "Envoyer un nouveau code",
      resendIn: "Nouveau code dans {s} s", sending: "Envoi…", checking: "Vérification…",
      sent: "Nous avons envoyé un code au {to}. Saisissez-le ci-dessous.", verified: "Vérifié.",
      wrong: "Ce code n'est pas le bon. Encore {n} essais.", numberInvalid: "Saisissez un numéro valide pour le pays choisi.",
      codeInvalid: "Saisissez le code du message : des chiffres seulement.",
      network: "Le serveur est injoignable. Vérifiez votre connexion et réessayez.",
      invalid_phone_number: "Ce numéro de téléphone n'est pas valide.",
      invalid_request: "La demande n'a pas été acceptée. Vérifiez le numéro et réessayez.",
      unsupported_channel: "Impossible d'envoyer un code de cette façon. Essayez un autre numéro.",
      not_found: "Aucun code n'attend ce numéro. Demandez-en un nouveau.",
      verification_not_pending: "Ce code n'est plus utilisable. Demandez-en un nouveau.",
      expired: "Le code a expiré. Demandez-en un nouveau.",
      max_attempts_reached: "Trop de codes erronés. Demandez un nouveau code, ou patientez.",
      rate_limited: "Trop de tentatives. Patientez un instant puis réessayez.",
      geo_blocked: "Impossible d'envoyer un code aux numéros de ce pays.",
      fraud_blocked: "Demande refusée pour protéger le service. Réessayez plus tard.",
      number_type_blocked: "Impossible d'envoyer un code à ce type de numéro (fixe, par exemple). Utilisez un mobile.",
      budget_exceeded: "Le service ne peut pas envoyer de code pour le moment. Réessayez plus tard.",
      delivery_unavailable: "Le code n'a pas pu être envoyé. Réessayez plus tard.",
      unauthorized: "Le service est mal configuré. Contactez son support.",
      forbidden: "Le service est mal configuré. Contactez son support.",
      idempotency_conflict: "Cette demande a déjà été faite. Réessayez.",
      internal: "Une erreur est survenue. Réessayez plus tard."
    },
    es: {
      usePasskey: "Usar una llave de acceso", passkeyWaiting: "Esperando tu llave de acceso…",
      passkeyCancelled: "No se usó la llave de acceso. Inténtalo de nuevo o usa un código.",
      passkeyRefused: "Esa llave de acceso no fue aceptada. Inténtalo de nuevo o usa un código.",
      country: "País", phone: "Número de teléfono", send: "Enviar código", code: "Código",
      verify: "Verificar", change: "Usar otro número", resend: "Enviar un código nuevo",
      resendIn: "Nuevo código en {s} s", sending: "Enviando…", checking: "Comprobando…",
      sent: "Enviamos un código al {to}. Escríbelo abajo.", verified: "Verificado.",
      wrong: "Ese código no es correcto. Quedan {n} intentos.", numberInvalid: "Escribe un número válido para el país elegido.",
      codeInvalid: "Escribe el código del mensaje: solo dígitos.",
      network: "No se puede contactar con el servidor. Revisa tu conexión e inténtalo de nuevo.",
      invalid_phone_number: "Ese número de teléfono no es válido.",
      invalid_request: "La solicitud no fue aceptada. Revisa el número e inténtalo de nuevo.",
      unsupported_channel: "No se pueden enviar códigos por esta vía. Prueba otro número.",
      not_found: "No hay ningún código pendiente para este número. Pide uno nuevo.",
      verification_not_pending: "Este código ya no sirve. Pide uno nuevo.",
      expired: "El código ha caducado. Pide uno nuevo.",
      max_attempts_reached: "Demasiados códigos incorrectos. Pide uno nuevo o espera.",
      rate_limited: "Demasiados intentos. Espera un momento e inténtalo de nuevo.",
      geo_blocked: "No se pueden enviar códigos a números de este país.",
      fraud_blocked: "Solicitud rechazada para proteger el servicio. Inténtalo más tarde.",
      number_type_blocked: "No se pueden enviar códigos a este tipo de número (un fijo, por ejemplo). Usa un móvil.",
      budget_exceeded: "El servicio no puede enviar códigos ahora. Inténtalo más tarde.",
      delivery_unavailable: "No se pudo enviar el código ahora. Inténtalo más tarde.",
      unauthorized: "El servicio no está bien configurado. Contacta con su soporte.",
      forbidden: "El servicio no está bien configurado. Contacta con su soporte.",
      idempotency_conflict: "Esta solicitud ya se hizo. Inténtalo de nuevo.",
      internal: "Algo salió mal. Inténtalo más tarde."
    },
    pt: {
      usePasskey: "Usar uma chave de acesso", passkeyWaiting: "Aguardando sua chave de acesso…",
      passkeyCancelled: "A chave de acesso não foi usada. Tente de novo ou use um código.",
      passkeyRefused: "Essa chave de acesso não foi aceita. Tente de novo ou use um código.",
      country: "País", phone: "Número de telefone", send: "Enviar código", code: "Código",
      verify: "Verificar", change: "Usar outro número", resend: "Enviar um novo código",
      resendIn: "Novo código em {s} s", sending: "Enviando…", checking: "Verificando…",
      sent: "Enviamos um código para {to}. Digite-o abaixo.", verified: "Verificado.",
      wrong: "Esse código não está certo. Restam {n} tentativas.", numberInvalid: "Digite um número válido para o país escolhido.",
      codeInvalid: "Digite o código da mensagem: apenas dígitos.",
      network: "Não foi possível contactar o servidor. Verifique a conexão e tente de novo.",
      invalid_phone_number: "Esse número de telefone não é válido.",
      invalid_request: "O pedido não foi aceito. Verifique o número e tente de novo.",
      unsupported_channel: "Não é possível enviar códigos desta forma. Tente outro número.",
      not_found: "Nenhum código aguarda este número. Peça um novo.",
      verification_not_pending: "Este código já não pode ser usado. Peça um novo.",
      expired: "O código expirou. Peça um novo.",
      max_attempts_reached: "Códigos errados demais. Peça um novo código ou aguarde.",
      rate_limited: "Tentativas demais. Aguarde um momento e tente de novo.",
      geo_blocked: "Não é possível enviar códigos para números deste país.",
      fraud_blocked: "Pedido recusado para proteger o serviço. Tente mais tarde.",
      number_type_blocked: "Não é possível enviar códigos para este tipo de número (um fixo, por exemplo). Use um celular.",
      budget_exceeded: "O serviço não pode enviar códigos agora. Tente mais tarde.",
      delivery_unavailable: "Não foi possível enviar o código agora. Tente mais tarde.",
      unauthorized: "O serviço não está bem configurado. Contacte o suporte.",
      forbidden: "O serviço não está bem configurado. Contacte o suporte.",
      idempotency_conflict: "Este pedido já foi feito. Tente de novo.",
      internal: "Algo deu errado. Tente mais tarde."
    },
    de: {
      usePasskey: "Passkey verwenden", passkeyWaiting: "Warte auf deinen Passkey…",
      passkeyCancelled: "Der Passkey wurde nicht verwendet. Versuche es erneut oder nutze einen Code.",
      passkeyRefused: "Dieser Passkey wurde nicht angenommen. Versuche es erneut oder nutze einen Code.",
      country: "Land", phone: "Telefonnummer", send: "Code senden", code: "Code",
      verify: "Bestätigen", change: "Andere Nummer verwenden", resend: "Neuen Code senden",
      resendIn: "Neuer Code in {s} s", sending: "Wird gesendet…", checking: "Wird geprüft…",
      sent: "Wir haben einen Code an {to} gesendet. Gib ihn unten ein.", verified: "Bestätigt.",
      wrong: "Dieser Code stimmt nicht. Noch {n} Versuche.", numberInvalid: "Gib eine gültige Nummer für das gewählte Land ein.",
      codeInvalid: "Gib den Code aus der Nachricht ein: nur Ziffern.",
      network: "Der Server ist nicht erreichbar. Prüfe die Verbindung und versuche es erneut.",
      invalid_phone_number: "Diese Telefonnummer ist ungültig.",
      invalid_request: "Die Anfrage wurde nicht angenommen. Prüfe die Nummer und versuche es erneut.",
      unsupported_channel: "Auf diesem Weg können keine Codes gesendet werden. Versuche eine andere Nummer.",
      not_found: "Für diese Nummer wartet kein Code. Fordere einen neuen an.",
      verification_not_pending: "Dieser Code ist nicht mehr gültig. Fordere einen neuen an.",
      expired: "Der Code ist abgelaufen. Fordere einen neuen an.",
      max_attempts_reached: "Zu viele falsche Codes. Fordere einen neuen an oder warte.",
      rate_limited: "Zu viele Versuche. Warte kurz und versuche es erneut.",
      geo_blocked: "An Nummern in diesem Land können keine Codes gesendet werden.",
      fraud_blocked: "Zum Schutz des Dienstes abgelehnt. Versuche es später erneut.",
      number_type_blocked: "An diese Art Nummer (etwa Festnetz) können keine Codes gesendet werden. Nutze eine Mobilnummer.",
      budget_exceeded: "Der Dienst kann gerade keine Codes senden. Versuche es später erneut.",
      delivery_unavailable: "Der Code konnte gerade nicht gesendet werden. Versuche es später erneut.",
      unauthorized: "Der Dienst ist falsch eingerichtet. Wende dich an den Support.",
      forbidden: "Der Dienst ist falsch eingerichtet. Wende dich an den Support.",
      idempotency_conflict: "Diese Anfrage wurde schon gestellt. Versuche es erneut.",
      internal: "Etwas ist schiefgegangen. Versuche es später erneut."
    },
    ar: {
      usePasskey: "استخدم مفتاح المرور", passkeyWaiting: "بانتظار مفتاح المرور…",
      passkeyCancelled: "لم يُستخدم مفتاح المرور. حاول مجددًا أو استخدم رمزًا.",
      passkeyRefused: "لم يُقبل مفتاح المرور هذا. حاول مجددًا أو استخدم رمزًا.",
      country: "البلد", phone: "رقم الهاتف", send: "إرسال الرمز", code: "الرمز",
      verify: "تحقق", change: "استخدم رقمًا آخر", resend: "إرسال رمز جديد",
      resendIn: "رمز جديد بعد {s} ث", sending: "جارٍ الإرسال…", checking: "جارٍ التحقق…",
      sent: "أرسلنا رمزًا إلى {to}. أدخله أدناه.", verified: "تم التحقق.",
      wrong: "هذا الرمز غير صحيح. تبقى {n} محاولات.", numberInvalid: "أدخل رقمًا صالحًا للبلد المختار.",
      codeInvalid: "أدخل الرمز من الرسالة: أرقام فقط.",
      network: "تعذر الوصول إلى الخادم. تحقق من اتصالك وحاول مجددًا.",
      invalid_phone_number: "رقم الهاتف هذا غير صالح.",
      invalid_request: "لم يُقبل الطلب. تحقق من الرقم وحاول مجددًا.",
      unsupported_channel: "لا يمكن إرسال الرموز بهذه الطريقة. جرّب رقمًا آخر.",
      not_found: "لا يوجد رمز بانتظار هذا الرقم. اطلب رمزًا جديدًا.",
      verification_not_pending: "لم يعد هذا الرمز صالحًا. اطلب رمزًا جديدًا.",
      expired: "انتهت صلاحية الرمز. اطلب رمزًا جديدًا.",
      max_attempts_reached: "رموز خاطئة كثيرة. اطلب رمزًا جديدًا أو انتظر.",
      rate_limited: "محاولات كثيرة. انتظر قليلًا ثم حاول مجددًا.",
      geo_blocked: "لا يمكن إرسال رموز إلى أرقام هذا البلد.",
      fraud_blocked: "رُفض الطلب لحماية الخدمة. حاول لاحقًا.",
      number_type_blocked: "لا يمكن إرسال رموز إلى هذا النوع من الأرقام (كالهاتف الثابت). استخدم رقم جوال.",
      budget_exceeded: "لا تستطيع الخدمة إرسال رموز الآن. حاول لاحقًا.",
      delivery_unavailable: "تعذر إرسال الرمز الآن. حاول لاحقًا.",
      unauthorized: "الخدمة غير مُعدّة بشكل صحيح. تواصل مع الدعم.",
      forbidden: "الخدمة غير مُعدّة بشكل صحيح. تواصل مع الدعم.",
      idempotency_conflict: "قُدّم هذا الطلب من قبل. حاول مجددًا.",
      internal: "حدث خطأ ما. حاول لاحقًا."
    },
    hi: {
      usePasskey: "पासकी इस्तेमाल करें", passkeyWaiting: "आपकी पासकी की प्रतीक्षा…",
      passkeyCancelled: "पासकी इस्तेमाल नहीं हुई। फिर कोशिश करें या कोड इस्तेमाल करें।",
      passkeyRefused: "यह पासकी स्वीकार नहीं हुई। फिर कोशिश करें या कोड इस्तेमाल करें।",
      country: "देश", phone: "फ़ोन नंबर", send: "कोड भेजें", code: "कोड",
      verify: "सत्यापित करें", change: "दूसरा नंबर इस्तेमाल करें", resend: "नया कोड भेजें",
      resendIn: "{s} सेकंड में नया कोड", sending: "भेजा जा रहा है…", checking: "जाँच हो रही है…",
      sent: "हमने {to} पर एक कोड भेजा है। उसे नीचे डालें।", verified: "सत्यापित।",
      wrong: "यह कोड सही नहीं है। {n} प्रयास बचे हैं।", numberInvalid: "चुने गए देश के लिए मान्य नंबर डालें।",
      codeInvalid: "संदेश का कोड डालें: केवल अंक।",
      network: "सर्वर तक नहीं पहुँच पाए। कनेक्शन जाँचें और फिर कोशिश करें।",
      invalid_phone_number: "यह फ़ोन नंबर मान्य नहीं है।",
      invalid_request: "अनुरोध स्वीकार नहीं हुआ। नंबर जाँचें और फिर कोशिश करें।",
      unsupported_channel: "इस तरीके से कोड नहीं भेजे जा सकते। दूसरा नंबर आज़माएँ।",
      not_found: "इस नंबर के लिए कोई कोड प्रतीक्षा में नहीं है। नया कोड मँगाएँ।",
      verification_not_pending: "यह कोड अब इस्तेमाल नहीं हो सकता। नया कोड मँगाएँ।",
      expired: "कोड की समय-सीमा खत्म हो गई। नया कोड मँगाएँ।",
      max_attempts_reached: "बहुत सारे गलत कोड। नया कोड मँगाएँ या प्रतीक्षा करें।",
      rate_limited: "बहुत सारे प्रयास। थोड़ा रुककर फिर कोशिश करें।",
      geo_blocked: "इस देश के नंबरों पर कोड नहीं भेजे जा सकते।",
      fraud_blocked: "सेवा की सुरक्षा के लिए अनुरोध अस्वीकार किया गया। बाद में कोशिश करें।",
      number_type_blocked: "इस तरह के नंबर (जैसे लैंडलाइन) पर कोड नहीं भेजे जा सकते। मोबाइल नंबर इस्तेमाल करें।",
      budget_exceeded: "सेवा अभी कोड नहीं भेज सकती। बाद में कोशिश करें।",
      delivery_unavailable: "कोड अभी नहीं भेजा जा सका। बाद में कोशिश करें।",
      unauthorized: "सेवा ठीक से सेट नहीं है। सहायता से संपर्क करें।",
      forbidden: "सेवा ठीक से सेट नहीं है। सहायता से संपर्क करें।",
      idempotency_conflict: "यह अनुरोध पहले ही किया जा चुका है। फिर कोशिश करें।",
      internal: "कुछ गलत हो गया। बाद में कोशिश करें।"
    },
    sw: {
      usePasskey: "Tumia passkey", passkeyWaiting: "Inasubiri passkey yako…",
      passkeyCancelled: "Passkey haikutumika. Jaribu tena au tumia msimbo.",
      passkeyRefused: "Passkey hiyo haikukubaliwa. Jaribu tena au tumia msimbo.",
      country: "Nchi", phone: "Namba ya simu", send: "Tuma msimbo", code: "Msimbo",
      verify: "Thibitisha", change: "Tumia namba nyingine", resend: "Tuma msimbo mpya",
      resendIn: "Msimbo mpya baada ya sekunde {s}", sending: "Inatuma…", checking: "Inakagua…",
      sent: "Tumetuma msimbo kwa {to}. Uandike hapa chini.", verified: "Imethibitishwa.",
      wrong: "Msimbo huo si sahihi. Zimebaki jaribio {n}.", numberInvalid: "Andika namba halali ya nchi uliyochagua.",
      codeInvalid: "Andika msimbo kutoka kwenye ujumbe: tarakimu tu.",
      network: "Seva haipatikani. Angalia muunganisho wako ujaribu tena.",
      invalid_phone_number: "Namba hiyo ya simu si halali.",
      invalid_request: "Ombi halikukubaliwa. Angalia namba ujaribu tena.",
      unsupported_channel: "Misimbo haiwezi kutumwa kwa njia hii. Jaribu namba nyingine.",
      not_found: "Hakuna msimbo unaosubiri namba hii. Omba mpya.",
      verification_not_pending: "Msimbo huu hauwezi kutumika tena. Omba mpya.",
      expired: "Msimbo umeisha muda. Omba mpya.",
      max_attempts_reached: "Misimbo mingi isiyo sahihi. Omba msimbo mpya au subiri.",
      rate_limited: "Majaribio mengi mno. Subiri kidogo kisha ujaribu tena.",
      geo_blocked: "Misimbo haiwezi kutumwa kwa namba za nchi hii.",
      fraud_blocked: "Ombi limekataliwa ili kulinda huduma. Jaribu baadaye.",
      number_type_blocked: "Misimbo haiwezi kutumwa kwa aina hii ya namba (kama ya mezani). Tumia namba ya simu ya mkononi.",
      budget_exceeded: "Huduma haiwezi kutuma misimbo sasa. Jaribu baadaye.",
      delivery_unavailable: "Msimbo haukuweza kutumwa sasa. Jaribu baadaye.",
      unauthorized: "Huduma haijasanidiwa vizuri. Wasiliana na msaada wake.",
      forbidden: "Huduma haijasanidiwa vizuri. Wasiliana na msaada wake.",
      idempotency_conflict: "Ombi hili limeshatumwa. Jaribu tena.",
      internal: "Hitilafu imetokea. Jaribu baadaye."
    }
  };

  var STYLE =
    ":host{display:block;font-family:var(--otpd-font,system-ui,sans-serif);color:var(--otpd-color,#1a1a1a);" +
    "max-width:var(--otpd-max-width,24rem)}" +
    "form{display:grid;gap:var(--otpd-gap,.75rem)}" +
    "label{font-weight:600;font-size:.9rem}" +
    ".field{display:grid;gap:.3rem}" +
    ".row{display:flex;gap:.5rem;flex-wrap:wrap}" +
    "select,input{font:inherit;font-size:1rem;padding:.6rem .7rem;border:1px solid var(--otpd-border,#8a8a8a);" +
    "border-radius:var(--otpd-radius,.4rem);background:var(--otpd-bg,#fff);color:inherit;min-width:0;width:100%;box-sizing:border-box}" +
    "input[aria-invalid=true]{border-color:var(--otpd-error,#b00020)}" +
    "#code{letter-spacing:.3em;font-variant-numeric:tabular-nums}" +
    "button{font:inherit;font-size:1rem;padding:.6rem 1rem;border-radius:var(--otpd-radius,.4rem);cursor:pointer;" +
    "border:1px solid var(--otpd-accent,#0b57d0)}" +
    "button.primary{background:var(--otpd-accent,#0b57d0);color:var(--otpd-accent-text,#fff)}" +
    "button.secondary{background:transparent;color:var(--otpd-accent,#0b57d0)}" +
    "button:disabled{opacity:.6;cursor:default}" +
    "button:focus-visible,select:focus-visible,input:focus-visible{outline:3px solid var(--otpd-focus,#0b57d0);outline-offset:2px}" +
    ".error{color:var(--otpd-error,#b00020);font-size:.9rem;margin:0}" +
    ".status{font-size:.9rem;margin:0}" +
    "[hidden]{display:none!important}";

  /** The first of the page's languages otpd has texts for, else English. */
  function pickLocale(wanted) {
    var tried = [wanted, document.documentElement.lang].concat(navigator.languages || [navigator.language]);
    for (var i = 0; i < tried.length; i++) {
      if (!tried[i]) continue;
      var lang = String(tried[i]).toLowerCase().split(/[-_]/)[0];
      if (TEXT[lang]) return lang;
    }
    return "en";
  }

  /** The region of a locale tag (`en-GB` → `GB`), if any. */
  function regionOf(tag) {
    var m = /[-_]([A-Za-z]{2})\b/.exec(tag || "");
    return m ? m[1].toUpperCase() : null;
  }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { e.append(c); });
    return e;
  }

  class OtpdVerify extends HTMLElement {
    static get observedAttributes() { return ["locale", "country"]; }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this._timer = null;
      this._webotp = null;
      this._verification = null;
      this._busy = false;
    }

    connectedCallback() {
      if (!this._form) this._render();
    }

    disconnectedCallback() {
      this._stopTimer();
      this._stopWebOtp();
    }

    attributeChangedCallback() {
      if (this._form) this._render();
    }

    /** The component's version. */
    static get version() { return VERSION; }

    _t(key, vars) {
      var text = (TEXT[this._locale] && TEXT[this._locale][key]) || TEXT.en[key] || key;
      Object.keys(vars || {}).forEach(function (k) { text = text.split("{" + k + "}").join(vars[k]); });
      return text;
    }

    _render() {
      this._locale = pickLocale(this.getAttribute("locale"));
      var root = this.shadowRoot;
      root.textContent = "";
      var style = el("style");
      style.textContent = STYLE;
      this.setAttribute("dir", this._locale === "ar" ? "rtl" : "ltr");

      var country = el("select", { id: "country", autocomplete: "tel-country-code" });
      var names = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames([this._locale], { type: "region" }) : null;
      var self = this;
      libphonenumber.getCountries()
        .map(function (cc) {
          var name = cc;
          try { name = (names && names.of(cc)) || cc; } catch (e) { /* an unknown region: its code */ }
          return { cc: cc, name: name, label: name + " (+" + libphonenumber.getCountryCallingCode(cc) + ")" };
        })
        .sort(function (a, b) { return a.name.localeCompare(b.name, self._locale); })
        .forEach(function (c) { country.append(el("option", { value: c.cc }, [c.label])); });
      var wanted = (this.getAttribute("country") || regionOf(navigator.language) || "US").toUpperCase();
      country.value = libphonenumber.getCountries().indexOf(wanted) >= 0 ? wanted : "US";

      var phone = el("input", {
        id: "phone", type: "tel", autocomplete: "tel-national", inputmode: "tel",
        "aria-describedby": "phone-error", required: ""
      });
      var phoneError = el("p", { id: "phone-error", class: "error", hidden: "" });
      var send = el("button", { type: "submit", class: "primary", id: "send" }, [this._t("send")]);
      // Offered when the page gives passkey routes and the browser has WebAuthn.
      var passkey = el("button", { type: "button", class: "secondary", id: "passkey" }, [this._t("usePasskey")]);
      passkey.hidden = !this._passkeysOffered();

      var sent = el("p", { id: "sent", class: "status" });
      var code = el("input", {
        id: "code", type: "text", autocomplete: "one-time-code", inputmode: "numeric",
        pattern: "[0-9]*", maxlength: "10", "aria-describedby": "sent code-error", required: ""
      });
      var codeError = el("p", { id: "code-error", class: "error", hidden: "" });
      var verify = el("button", { type: "submit", class: "primary", id: "verify" }, [this._t("verify")]);
      var resend = el("button", { type: "button", class: "secondary", id: "resend" }, [this._t("resend")]);
      var change = el("button", { type: "button", class: "secondary", id: "change" }, [this._t("change")]);

      var numberStep = el("div", { id: "number-step", class: "field" }, [
        el("div", { class: "field" }, [el("label", { for: "country" }, [this._t("country")]), country]),
        el("div", { class: "field" }, [el("label", { for: "phone" }, [this._t("phone")]), phone, phoneError]),
        el("div", { class: "row" }, [send, passkey])
      ]);
      var codeStep = el("div", { id: "code-step", class: "field", hidden: "" }, [
        sent,
        el("div", { class: "field" }, [el("label", { for: "code" }, [this._t("code")]), code, codeError]),
        el("div", { class: "row" }, [verify, resend, change])
      ]);
      // Announced to screen readers: progress (polite) and errors (in their fields, and here).
      var live = el("p", { id: "live", class: "status", role: "status", "aria-live": "polite" });
      var form = el("form", { novalidate: "", part: "form" }, [numberStep, codeStep, live]);
      root.append(style, form);

      this._form = form;
      this._el = {
        country: country, phone: phone, phoneError: phoneError, send: send, passkey: passkey, sent: sent,
        code: code, codeError: codeError, verify: verify, resend: resend, change: change,
        numberStep: numberStep, codeStep: codeStep, live: live
      };

      phone.addEventListener("input", function () { self._formatPhone(); });
      country.addEventListener("change", function () { self._formatPhone(); });
      code.addEventListener("input", function () {
        code.value = code.value.replace(/\D/g, "");
        self._clearError(code, codeError);
      });
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        if (self._el.codeStep.hidden) self._start(); else self._check();
      });
      resend.addEventListener("click", function () { self._start(); });
      passkey.addEventListener("click", function () { self._passkey(); });
      change.addEventListener("click", function () { self._backToNumber(); });
    }

    /** Formats the number as typed, for the country chosen (a leading + picks it). */
    _formatPhone() {
      var e = this._el;
      var raw = e.phone.value;
      if (raw.trim().charAt(0) === "+") {
        var parsed = libphonenumber.parsePhoneNumberFromString(raw);
        if (parsed && parsed.country) e.country.value = parsed.country;
      }
      var formatter = new libphonenumber.AsYouType(raw.trim().charAt(0) === "+" ? undefined : e.country.value);
      var formatted = formatter.input(raw);
      // Only reformat when the caret is at the end (typing), not while editing inside.
      if (e.phone.selectionStart === raw.length && formatted !== raw) e.phone.value = formatted;
      this._clearError(e.phone, e.phoneError);
    }

    /** The number in E.164, or null when it is not a valid number of the chosen country. */
    _number() {
      var parsed = libphonenumber.parsePhoneNumberFromString(this._el.phone.value, this._el.country.value);
      return parsed && parsed.isValid() ? parsed : null;
    }

    async _start() {
      if (this._busy) return;
      var e = this._el;
      var parsed = this._number();
      if (!parsed) {
        this._showError(e.phone, e.phoneError, this._t("numberInvalid"));
        e.phone.focus();
        return;
      }
      var to = parsed.number;
      var channel = this.getAttribute("channel") || "sms";
      this._busy = true;
      this._say(this._t("sending"));
      var reply = await this._post(this.getAttribute("start-url"), { to: to, channel: channel, locale: this._locale });
      this._busy = false;
      var onCode = !e.codeStep.hidden;
      if (!reply.ok) {
        if (reply.retryAfter) this._countdown(reply.retryAfter);
        var field = onCode ? e.code : e.phone;
        var errorBox = onCode ? e.codeError : e.phoneError;
        this._fail(field, errorBox, reply);
        return;
      }
      this._verification = { id: reply.body.id, to: to };
      e.numberStep.hidden = true;
      e.codeStep.hidden = false;
      var shown = parsed.formatInternational();
      e.sent.textContent = this._t("sent", { to: shown });
      this._say(this._t("sent", { to: shown }));
      e.code.value = "";
      this._clearError(e.code, e.codeError);
      e.code.focus();
      this._countdown(Number(this.getAttribute("resend-seconds")) || 30);
      this._listenForWebOtp();
      this.dispatchEvent(new CustomEvent("started", {
        bubbles: true, composed: true, detail: { id: reply.body.id, to: to, channel: channel }
      }));
    }

    async _check() {
      if (this._busy || !this._verification) return;
      var e = this._el;
      var code = e.code.value.trim();
      if (!/^[0-9]{4,10}$/.test(code)) {
        this._showError(e.code, e.codeError, this._t("codeInvalid"));
        e.code.focus();
        return;
      }
      this._busy = true;
      this._say(this._t("checking"));
      var reply = await this._post(this.getAttribute("check-url"), { id: this._verification.id, to: this._verification.to, code: code });
      this._busy = false;
      if (!reply.ok) {
        this._fail(e.code, e.codeError, reply);
        return;
      }
      if (reply.body.valid === true || reply.body.status === "approved") {
        this._stopTimer();
        this._stopWebOtp();
        e.verify.disabled = true;
        e.resend.disabled = true;
        this._say(this._t("verified"));
        this.dispatchEvent(new CustomEvent("verified", {
          bubbles: true, composed: true, detail: { id: this._verification.id, to: this._verification.to, result: reply.body }
        }));
        return;
      }
      var left = reply.body.remaining_attempts;
      var message = typeof left === "number" ? this._t("wrong", { n: left }) : this._t("wrong", { n: "?" });
      this._showError(e.code, e.codeError, message);
      e.code.select();
      this.dispatchEvent(new CustomEvent("failed", {
        bubbles: true, composed: true, detail: { code: "wrong_code", status: 200, message: message, remaining_attempts: left }
      }));
    }

    /** Whether to offer "Use a passkey": the page's routes for it, and WebAuthn here. */
    _passkeysOffered() {
      return Boolean(this.getAttribute("passkey-start-url") && this.getAttribute("passkey-finish-url") &&
        window.PublicKeyCredential && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function");
    }

    /** Signs in with a passkey: options from the page's backend, the browser's
     *  authenticator, the assertion back to the backend (which asks otpd). */
    async _passkey() {
      if (this._busy) return;
      var e = this._el;
      this._busy = true;
      this._clearError(e.phone, e.phoneError);
      this._say(this._t("passkeyWaiting"));
      var start = await this._post(this.getAttribute("passkey-start-url"), { locale: this._locale });
      if (!start.ok || !start.body.options) {
        this._busy = false;
        this._fail(e.passkey, e.phoneError, start);
        return;
      }
      var credential;
      try {
        var publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(start.body.options);
        credential = await navigator.credentials.get({ publicKey: publicKey });
      } catch (err) {
        credential = null;
      }
      if (!credential) {
        this._busy = false;
        this._refusePasskey("passkey_cancelled", "passkeyCancelled");
        return;
      }
      var finish = await this._post(this.getAttribute("passkey-finish-url"), { id: start.body.id, credential: credential.toJSON() });
      this._busy = false;
      if (!finish.ok) {
        this._fail(e.passkey, e.phoneError, finish);
        return;
      }
      if (finish.body.valid !== true) {
        this._refusePasskey("passkey_invalid", "passkeyRefused");
        return;
      }
      this._say(this._t("verified"));
      this.dispatchEvent(new CustomEvent("verified", {
        bubbles: true, composed: true,
        detail: { passkey: true, entity: finish.body.entity, factor: finish.body.factor, result: finish.body }
      }));
    }

    /** A passkey sign-in that did not happen: said in words, and told to the page. */
    _refusePasskey(code, key) {
      var message = this._t(key);
      this._el.phoneError.textContent = message;
      this._el.phoneError.hidden = false;
      this._say(message);
      this._el.passkey.focus();
      this.dispatchEvent(new CustomEvent("failed", {
        bubbles: true, composed: true, detail: { code: code, status: 0, message: message }
      }));
    }

    /** POSTs JSON to the page's backend; `{ok, status, body, retryAfter}`, never throws. */
    async _post(url, body) {
      try {
        var r = await fetch(url, {
          method: "POST", credentials: "same-origin",
          headers: { "content-type": "application/json", accept: "application/json, application/problem+json" },
          body: JSON.stringify(body)
        });
        var data = null;
        try { data = await r.json(); } catch (e) { data = null; }
        var retry = Number(r.headers.get("retry-after")) || (data && Number(data.retry_after)) || 0;
        return { ok: r.ok, status: r.status, body: data || {}, retryAfter: retry };
      } catch (e) {
        return { ok: false, status: 0, body: { code: "network" }, retryAfter: 0 };
      }
    }

    /** Shows an otpd error (its `code`, in plain words) and tells the page. */
    _fail(field, box, reply) {
      var code = (reply.body && reply.body.code) || (reply.status === 0 ? "network" : "internal");
      var message = this._t(TEXT.en[code] ? code : "internal");
      this._showError(field, box, message);
      field.focus();
      this.dispatchEvent(new CustomEvent("failed", {
        bubbles: true, composed: true, detail: { code: code, status: reply.status, message: message }
      }));
    }

    _showError(field, box, message) {
      if (field.tagName !== "BUTTON") field.setAttribute("aria-invalid", "true");
      box.textContent = message;
      box.hidden = false;
      this._say(message);
    }

    _clearError(field, box) {
      field.removeAttribute("aria-invalid");
      box.textContent = "";
      box.hidden = true;
    }

    /** Announces `text` to screen readers. */
    _say(text) {
      this._el.live.textContent = text;
    }

    /** Disables "send a new code" for `seconds`, showing the time left. */
    _countdown(seconds) {
      var e = this._el;
      var self = this;
      this._stopTimer();
      var until = Date.now() + seconds * 1000;
      var tick = function () {
        var left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0) {
          self._stopTimer();
          e.resend.disabled = false;
          e.resend.textContent = self._t("resend");
          return;
        }
        e.resend.disabled = true;
        e.resend.textContent = self._t("resendIn", { s: left });
      };
      tick();
      this._timer = setInterval(tick, 1000);
    }

    _stopTimer() {
      if (this._timer) clearInterval(this._timer);
      this._timer = null;
    }

    /** Fills and checks the code when the browser reads it from the SMS (WebOTP). */
    _listenForWebOtp() {
      this._stopWebOtp();
      if (!("OTPCredential" in window) || !navigator.credentials) return;
      var self = this;
      var abort = new AbortController();
      this._webotp = abort;
      navigator.credentials.get({ otp: { transport: ["sms"] }, signal: abort.signal })
        .then(function (otp) {
          if (!otp || !otp.code || self._webotp !== abort) return;
          self._el.code.value = String(otp.code).replace(/\D/g, "");
          self._check();
        })
        .catch(function () { /* dismissed or not supported: the user types the code */ });
    }

    _stopWebOtp() {
      if (this._webotp) this._webotp.abort();
      this._webotp = null;
    }

    _backToNumber() {
      var e = this._el;
      this._stopTimer();
      this._stopWebOtp();
      this._verification = null;
      e.codeStep.hidden = true;
      e.numberStep.hidden = false;
      e.verify.disabled = false;
      this._say("");
      e.phone.focus();
    }
  }

  if (!customElements.get("otpd-verify")) customElements.define("otpd-verify", OtpdVerify);
  window.OtpdVerify = OtpdVerify;
})(OTPD_LIBPHONENUMBER);

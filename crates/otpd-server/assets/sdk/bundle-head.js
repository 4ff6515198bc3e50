/*! otpd-verify: the sign-in component of otpd (Apache-2.0). Bundles libphonenumber-js (MIT,
 * (c) 2016 @catamphetamine), loaded into this closure only. */
(function () {
var module = { exports: {} }, exports = module.exports;

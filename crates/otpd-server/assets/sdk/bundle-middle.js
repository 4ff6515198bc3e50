
var OTPD_LIBPHONENUMBER = module.exports;

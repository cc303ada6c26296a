// Exposes the client library to the API test (page.evaluate drives it).
import { Hearth, HearthError } from "/pkg/hearth.js";
window.Hearth = Hearth;
window.HearthError = HearthError;
window.hearthReady = true;

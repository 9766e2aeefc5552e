using System;
using System.Collections.Generic;
using System.IO;

namespace ClearBG
{
    /// <summary>
    /// The fields of POST /v1.0/removebg, Pascal-cased; a null property is left out (the server's
    /// default applies). Exactly one source: <see cref="ImageFile"/>, <see cref="ImageStream"/>,
    /// <see cref="ImageBytes"/>, <see cref="ImageUrl"/> or <see cref="ImageFileB64"/>.
    /// </summary>
    public sealed class RemoveBackgroundRequest
    {
        /// <summary>image_file: the photo's path (opened again for each attempt).</summary>
        public string ImageFile { get; set; }
        /// <summary>image_file: the photo as a stream, sent from its position when the call began (read again on a retry when it can seek; else the call is not retried). Left open.</summary>
        public Stream ImageStream { get; set; }
        /// <summary>image_file: the photo's bytes.</summary>
        public byte[] ImageBytes { get; set; }
        /// <summary>The file name sent with <see cref="ImageStream"/> or <see cref="ImageBytes"/> (default "image_file").</summary>
        public string ImageFileName { get; set; }
        /// <summary>image_url: the photo's address, fetched by the server.</summary>
        public string ImageUrl { get; set; }
        /// <summary>image_file_b64: the photo as base64 (a data: URL prefix is fine).</summary>
        public string ImageFileB64 { get; set; }
        /// <summary>size: auto (default), preview, small/regular, medium, hd, full/4k, 50MP.</summary>
        public string Size { get; set; }
        /// <summary>type: auto, person, product, animal, car, other.</summary>
        public string Type { get; set; }
        /// <summary>type_level: 1 (default), 2/latest, none.</summary>
        public string TypeLevel { get; set; }
        /// <summary>format: png (default), jpg, webp, zip, auto.</summary>
        public string Format { get; set; }
        /// <summary>bg_color: hex (3, 4, 6 or 8 digits, # optional) or a CSS colour name.</summary>
        public string BgColor { get; set; }
        /// <summary>bg_image_url: a background picture's address.</summary>
        public string BgImageUrl { get; set; }
        /// <summary>bg_image_file: a background picture's path.</summary>
        public string BgImageFile { get; set; }
        /// <summary>channels: rgba (default) or alpha.</summary>
        public string Channels { get; set; }
        /// <summary>crop: true crops to the subject.</summary>
        public bool? Crop { get; set; }
        /// <summary>crop_margin: 10px, 5%, "10px 20px", "1% 2% 3% 4%".</summary>
        public string CropMargin { get; set; }
        /// <summary>scale: 10%..100% or original.</summary>
        public string Scale { get; set; }
        /// <summary>position: original, center, 50%, "30% 70%".</summary>
        public string Position { get; set; }
        /// <summary>roi: "x1 y1 x2 y2" in px or %.</summary>
        public string Roi { get; set; }
        /// <summary>add_shadow: true draws a soft drop shadow.</summary>
        public bool? AddShadow { get; set; }
        /// <summary>shadow_type: drop or auto.</summary>
        public string ShadowType { get; set; }
        /// <summary>shadow_opacity: 0..100.</summary>
        public int? ShadowOpacity { get; set; }
        /// <summary>semitransparency: true (the server's default).</summary>
        public bool? Semitransparency { get; set; }
        /// <summary>Further form fields, sent as given (REST names).</summary>
        public IDictionary<string, string> ExtraFields { get; set; }

        /// <summary>Your own key for this call (default: a fresh random UUID, the same on its retries).</summary>
        public string IdempotencyKey { get; set; }
        /// <summary>For this call: the time one attempt may take.</summary>
        public TimeSpan? Timeout { get; set; }
        /// <summary>For this call: retries of a failed attempt.</summary>
        public int? MaxRetries { get; set; }

        /// <summary>The text fields, REST names, in the API's order.</summary>
        internal List<KeyValuePair<string, string>> TextFields()
        {
            var fields = new List<KeyValuePair<string, string>>();
            Add(fields, "image_url", ImageUrl);
            Add(fields, "image_file_b64", ImageFileB64);
            Add(fields, "size", Size);
            Add(fields, "type", Type);
            Add(fields, "type_level", TypeLevel);
            Add(fields, "format", Format);
            Add(fields, "bg_color", BgColor);
            Add(fields, "bg_image_url", BgImageUrl);
            Add(fields, "channels", Channels);
            Add(fields, "crop", Bool(Crop));
            Add(fields, "crop_margin", CropMargin);
            Add(fields, "scale", Scale);
            Add(fields, "position", Position);
            Add(fields, "roi", Roi);
            Add(fields, "add_shadow", Bool(AddShadow));
            Add(fields, "shadow_type", ShadowType);
            Add(fields, "shadow_opacity", ShadowOpacity.HasValue ? ShadowOpacity.Value.ToString(System.Globalization.CultureInfo.InvariantCulture) : null);
            Add(fields, "semitransparency", Bool(Semitransparency));
            if (ExtraFields != null)
            {
                foreach (var extra in ExtraFields) Add(fields, extra.Key, extra.Value);
            }
            return fields;
        }

        static void Add(List<KeyValuePair<string, string>> fields, string name, string value)
        {
            if (value != null) fields.Add(new KeyValuePair<string, string>(name, value));
        }

        static string Bool(bool? value)
        {
            return value.HasValue ? (value.Value ? "true" : "false") : null;
        }
    }
}

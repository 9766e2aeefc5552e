using System.Linq;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace ClearBG
{
    /// <summary>
    /// The two small JSON documents the API answers (errors and the account), read with the
    /// framework's own JSON reader (JSON as XML: objects are elements, arrays hold "item"s), so the
    /// package needs nothing beyond the base library.
    /// </summary>
    internal static class Json
    {
        /// <summary>The document's root, or null when the text is not JSON.</summary>
        internal static XElement Parse(string text)
        {
            if (string.IsNullOrEmpty(text)) return null;
            try
            {
                using (var reader = JsonReaderWriterFactory.CreateJsonReader(Encoding.UTF8.GetBytes(text), XmlDictionaryReaderQuotas.Max))
                {
                    return XElement.Load(reader);
                }
            }
            catch (XmlException)
            {
                return null;
            }
        }

        /// <summary>The first element down the path of names, or null.</summary>
        internal static XElement Path(XElement element, params string[] names)
        {
            foreach (var name in names)
            {
                if (element == null) return null;
                element = element.Elements(name).FirstOrDefault();
            }
            return element;
        }

        internal static bool IsString(XElement element)
        {
            var type = element.Attribute("type");
            return type != null && type.Value == "string";
        }
    }
}
